"""retrieve: a `Query` → ranked passages with their citations (dense ∪ lexical, fused, filtered).

Usage::

    retriever = HybridRetriever(Archive(Path("index")), load_embedder())
    hits = retriever.search(understand("衡阳在先进制造业百强市榜单中排第几？"), top_k=5)
    hits[0].citation.label    # '《衡阳日报》2021年11月30日 第18012号 第1版《…》'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.cite import Citation, citation_label, make_citation  # noqa: F401  (re-exported)
from qa.embed import Embedder
from qa.fusion import dense_weight
from qa.index import Archive, Snapshot
from qa.lexical import tokenize
from qa.store import ArticleRow, IssueRow
from qa.understand import Query, understand

CANDIDATES = 100  # taken from each retriever before fusion


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.ones_like(x) * (1.0 if x.max() > 0 else 0.0)


@dataclass
class Hit:
    chunk_id: str
    text: str
    score: float
    citation: Citation
    issue_id: str
    article_id: str

    def to_dict(self) -> dict:
        return {"chunk_id": self.chunk_id, "text": self.text, "score": round(self.score, 6),
                "citation": self.citation.to_dict()}


class HybridRetriever:
    """Dense (FAISS) and lexical (BM25) candidates, fused by normalized score, filtered by date/issue."""

    def __init__(self, archive: Archive, embedder: Embedder):
        self.archive = archive
        self.embedder = embedder

    def search(
        self,
        query: Query | str,
        top_k: int = 5,
        *,
        date_from: str | None = None,
        date_to: str | None = None,
        issue: str | None = None,
    ) -> list[Hit]:
        """Best `top_k` passages. Explicit filters override those found in the question."""
        if isinstance(query, str):
            query = understand(query)
        snap = self.archive.snapshot()
        if snap.size == 0:
            return []
        date_from = date_from or query.date_from
        date_to = date_to or query.date_to
        issue = issue or query.issue
        mask = self._filter_mask(snap, date_from, date_to, issue)
        if mask is not None and not mask.any():
            if date_from == query.date_from and date_to == query.date_to and issue == query.issue:
                mask = None  # the question's own date names no page we have: it dated an event
            else:
                return []
        fused = self._fuse(snap, query.search_text, mask)
        return self._hits(snap, fused[:top_k])

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _filter_mask(snap: Snapshot, date_from, date_to, issue) -> np.ndarray | None:
        if not (date_from or date_to or issue):
            return None
        return snap.filter_mask(date_from, date_to, issue)

    def _dense(self, snap: Snapshot, qvec: np.ndarray, mask: np.ndarray | None, k: int) -> dict[int, float]:
        return snap.dense(qvec, k, mask)

    @staticmethod
    def _lexical(snap: Snapshot, text: str, mask: np.ndarray | None) -> np.ndarray:
        scores = snap.lexical.scores(tokenize(text))
        return np.where(mask, scores, 0.0) if mask is not None else scores

    def _fuse(self, snap: Snapshot, text: str, mask) -> list[tuple[int, float]]:
        """Convex combination of min-max normalized dense and BM25 scores over the union of both
        candidate lists, clearly above reciprocal rank fusion, which throws away how far ahead a
        clear lexical winner is. The weight depends on the question's lexical overlap (qa.fusion)."""
        qvec = self.embedder.embed_query(text).astype(np.float32)
        dense = self._dense(snap, qvec, mask, CANDIDATES)
        bm25 = self._lexical(snap, text, mask)
        matched = np.flatnonzero(bm25 > 0)
        lex_top = matched[np.argpartition(-bm25[matched], CANDIDATES - 1)[:CANDIDATES]] \
            if len(matched) > CANDIDATES else matched
        candidates = set(dense) | {int(i) for i in lex_top}
        if not candidates:
            return []
        pos = np.fromiter(candidates, dtype=np.int64)
        missing = [int(p) for p in pos if p not in dense]
        if missing:  # lexical-only candidates: their cosine from the index's vectors
            dense.update(zip(missing, snap.dense_scores(qvec, missing).tolist()))
        d = np.array([dense[p] for p in pos])
        b = bm25[pos].astype(np.float64)
        w = dense_weight(snap.lexical, tokenize(text), bm25)  # paraphrases lean on the dense score
        fused = w * _minmax(d) + (1 - w) * _minmax(b)
        order = np.argsort(-fused, kind="stable")
        return [(int(pos[i]), float(fused[i])) for i in order]

    def _hits(self, snap: Snapshot, ranked: list[tuple[int, float]]) -> list[Hit]:
        store = self.archive.store
        vec_ids = [int(snap.vec_ids[pos]) for pos, _ in ranked]
        rows = store.passages_by_vec_id(vec_ids)
        hits = []
        issues: dict[str, IssueRow | None] = {}
        articles: dict[str, ArticleRow | None] = {}
        for (pos, score), vec_id in zip(ranked, vec_ids):
            p = rows.get(vec_id)
            if p is None:  # removed by an ingest that this snapshot predates
                continue
            if p.issue_id not in issues:
                issues[p.issue_id] = store.issue(p.issue_id)
            if p.article_id not in articles:
                articles[p.article_id] = store.article(p.article_id)
            issue = issues[p.issue_id]
            if issue is None:
                continue
            hits.append(Hit(chunk_id=p.id, text=p.text, score=score,
                            citation=make_citation(issue, articles[p.article_id], p),
                            issue_id=p.issue_id, article_id=p.article_id))
        return hits
