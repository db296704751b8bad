"""retrieve: a `Query` → ranked passages with their citations (dense ∪ lexical, fused, filtered).

Usage::

    retriever = HybridRetriever(Archive(Path("index")), load_embedder())
    hits = retriever.search(understand("衡阳在先进制造业百强市榜单中排第几？"), top_k=5)
    hits[0].citation.label    # '《衡阳日报》2021年11月30日 第18012号 第1版《…》'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

from qa.embed import Embedder
from qa.fusion import dense_weight
from qa.index import Archive, Snapshot
from qa.lexical import tokenize
from qa.store import ArticleRow, IssueRow, PassageRow
from qa.understand import Query, understand

CANDIDATES = 100  # taken from each retriever before fusion


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.ones_like(x) * (1.0 if x.max() > 0 else 0.0)


@dataclass
class Citation:
    """Where a passage stands in the archive. Unknown fields are None, never guessed."""

    paper: str | None
    date: str | None
    date_source: str | None
    issue: str | None
    page: int | None
    headline: str | None
    byline: str | None
    source: str
    start: int
    end: int
    label: str

    def to_dict(self) -> dict:
        return asdict(self)


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


def citation_label(issue: IssueRow, headline: str | None) -> str:
    """'《衡阳日报》2021年11月30日 第18012号 第1版《headline》', leaving out what is unknown.

    Usage: ``citation_label(store.issue(id), "习近平会见…")``"""
    parts = []
    if issue.paper:
        parts.append(f"《{issue.paper}》")
    if issue.date:
        y, m, d = (int(x) for x in issue.date.split("-"))
        # Only a masthead or a sidecar states the date; any other source is an inference.
        stated = issue.date_source in ("masthead", "sidecar")
        parts.append(f"{y}年{m}月{d}日" + ("" if stated else "（推断）"))
    if issue.issue_no:
        parts.append(f"第{issue.issue_no}号")
    if issue.page:
        parts.append(f"第{issue.page}版")
    paper = parts.pop(0) if issue.paper else ""
    label = paper + " ".join(parts) if (paper or parts) else issue.source
    if headline:
        label += f"《{headline}》"
    return label


def make_citation(issue: IssueRow, article: ArticleRow | None, passage: PassageRow) -> Citation:
    headline = article.headline if article else None
    return Citation(
        paper=issue.paper, date=issue.date, date_source=issue.date_source, issue=issue.issue_no,
        page=issue.page, headline=headline, byline=article.byline if article else None,
        source=issue.source, start=passage.start, end=passage.end,
        label=citation_label(issue, headline),
    )


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
        mask = np.ones(snap.size, dtype=bool)
        if date_from or date_to:
            lo, hi = date_from or "0000-00-00", date_to or "9999-99-99"
            mask &= np.array([d is not None and lo <= d <= hi for d in snap.dates], dtype=bool)
        if issue:
            mask &= np.array([n == issue for n in snap.issue_nos], dtype=bool)
        return mask

    def _dense(self, snap: Snapshot, qvec: np.ndarray, mask: np.ndarray | None, k: int) -> dict[int, float]:
        params = None
        if mask is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(snap.vec_ids[mask]))
        scores, ids = snap.vectors.search(qvec.reshape(1, -1), min(k, snap.size), params=params)
        return {snap.position[int(v)]: float(s) for s, v in zip(scores[0], ids[0]) if v >= 0}

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
        n_lex = min(CANDIDATES, snap.size)
        lex_top = np.argpartition(-bm25, n_lex - 1)[:n_lex]
        candidates = set(dense) | {int(i) for i in lex_top if bm25[i] > 0}
        if not candidates:
            return []
        pos = np.fromiter(candidates, dtype=np.int64)
        missing = [p for p in pos if p not in dense]
        if missing:  # lexical-only candidates: their cosine from the stored vectors
            vecs = np.stack([snap.vectors.reconstruct(int(snap.vec_ids[p])) for p in missing])
            dense.update(zip(missing, (vecs @ qvec).tolist()))
        d = np.array([dense[p] for p in pos])
        b = bm25[pos].astype(np.float64)
        w = dense_weight(snap.lexical, tokenize(text), bm25)  # paraphrases lean on the dense score
        fused = w * _minmax(d) + (1 - w) * _minmax(b)
        order = np.argsort(-fused, kind="stable")
        return [(int(pos[i]), float(fused[i])) for i in order]

    def _hits(self, snap: Snapshot, ranked: list[tuple[int, float]]) -> list[Hit]:
        store = self.archive.store
        ids = [snap.ids[pos] for pos, _ in ranked]
        rows = store.passages_by_id(ids)
        hits = []
        issues: dict[str, IssueRow | None] = {}
        articles: dict[str, ArticleRow | None] = {}
        for (pos, score), pid in zip(ranked, ids):
            p = rows.get(pid)
            if p is None:  # removed by an ingest that this snapshot predates
                continue
            if p.issue_id not in issues:
                issues[p.issue_id] = store.issue(p.issue_id)
            if p.article_id not in articles:
                articles[p.article_id] = store.article(p.article_id)
            issue = issues[p.issue_id]
            if issue is None:
                continue
            hits.append(Hit(chunk_id=pid, text=p.text, score=score,
                            citation=make_citation(issue, articles[p.article_id], p),
                            issue_id=p.issue_id, article_id=p.article_id))
        return hits
