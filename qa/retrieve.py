"""retrieve: a `Query` → ranked passages with their citations (dense ∪ lexical, fused, filtered).

Usage::

    retriever = HybridRetriever(Archive(Path("index")), load_embedder())
    hits = retriever.search(understand("衡阳在先进制造业百强市榜单中排第几？"), top_k=5)
    hits[0].citation.label    # '《衡阳日报》2021年11月30日 第18012号 第1版《…》'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.cite import Citation, chinese_date, citation_label, make_citation  # noqa: F401  (re-exported)
from qa.embed import Embedder
from qa.fusion import dense_weight
from qa.index import Archive
from qa.lexical import tokenize
from qa.search import SearchView
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


_NOTHING = object()  # a filter the caller gave that matches no page


class HybridRetriever:
    """Dense and lexical (BM25) candidates from the configured search index (qa.search), fused by
    normalized score, filtered by date/issue."""

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
        """Best `top_k` passages. Explicit filters override those found in the question; of the
        question's own issue and days, those that match no page are left out (`search_scoped`)."""
        return self.search_scoped(query, top_k, date_from=date_from, date_to=date_to, issue=issue)[0]

    def search_scoped(
        self,
        query: Query | str,
        top_k: int = 5,
        *,
        date_from: str | None = None,
        date_to: str | None = None,
        issue: str | None = None,
    ) -> tuple[list[Hit], tuple[str, ...]]:
        """`search`'s hits, and which of the question's own filters it left out because no page
        matches them: (), ('issue',), ('days',) or ('issue', 'days'); `scope_caveat` words them
        for the reader. Usage: ``hits, dropped = retriever.search_scoped(understand("第99999号…"))``"""
        if isinstance(query, str):
            query = understand(query)
        snap = self.archive.snapshot()
        if snap.size == 0:
            return [], ()
        flt, dropped = self._scope(snap, query, date_from, date_to, issue)
        if flt is _NOTHING:
            return [], ()
        fused = self._fuse(snap, query.search_text, flt)
        return self._hits(fused, top_k), dropped

    def search_caveated(self, query: Query | str, top_k: int = 5, **filters) -> tuple[list[Hit], str | None]:
        """`search`'s hits, and what the reader must know when it left out the question's own
        issue or days (`scope_caveat`); None when it left out nothing or found nothing. `filters`:
        `date_from`, `date_to`, `issue`, as for `search`.

        Usage: ``hits, caveat = retriever.search_caveated("第99999号…")`` → caveat '档案中没有第99999号报纸，…'"""
        if isinstance(query, str):
            query = understand(query)
        hits, dropped = self.search_scoped(query, top_k, **filters)
        return hits, scope_caveat(query, dropped) if hits else None

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _scope(snap: SearchView, query: Query, date_from, date_to, issue) -> tuple[object, tuple[str, ...]]:
        """The filter to search with, and which of the question's parts it leaves out. The
        caller's filters always hold (`_NOTHING` when they match no page); the question's issue
        and days fill in where the caller gave none, and those matching no page (a misremembered
        number, an event long before it was reported) are left out: the issue first, then the
        days, then both. The answer says so (`scope_caveat`)."""
        own_days, own_issue = not (date_from or date_to), issue is None
        days = (query.date_from, query.date_to) if own_days else (date_from, date_to)
        number = query.issue if own_issue else issue
        tries = [(days, number, ())]
        if own_issue and number:
            tries.append((days, None, ("issue",)))
        if own_days and any(days):
            tries.append(((None, None), number, ("days",)))
            if own_issue and number:
                tries.append(((None, None), None, ("issue", "days")))
        for (start, end), no, dropped in tries:
            flt = snap.where(start, end, no)
            if flt is None or snap.any_match(flt):
                return flt, dropped
        return _NOTHING, ()

    def _fuse(self, snap: SearchView, text: str, flt) -> list[tuple[int, float]]:
        """Convex combination of min-max normalized dense and BM25 scores over the union of both
        candidate lists, clearly above reciprocal rank fusion, which throws away how far ahead a
        clear lexical winner is. The weight depends on the question's lexical overlap (qa.fusion).
        Keys are the store's vec_ids, whatever the search engine."""
        qvec = self.embedder.embed_query(text).astype(np.float32)
        tokens = tokenize(text)
        dense = snap.dense_top(qvec, CANDIDATES, flt)
        lexical = snap.lexical_search(tokens, flt)
        bm25 = lexical.top(CANDIDATES)
        ids = list(dict.fromkeys([*dense, *bm25]))
        if not ids:
            return []
        missing = [v for v in ids if v not in dense]
        if missing:  # lexical-only candidates: their cosine from the index's vectors
            dense.update(zip(missing, snap.dense_of(qvec, missing).tolist()))
        unscored = [v for v in ids if v not in bm25]
        if unscored:  # dense-only candidates: their BM25 score, 0 when no term matches
            bm25.update(zip(unscored, lexical.scores_of(unscored).tolist()))
        d = np.array([dense[v] for v in ids], dtype=np.float64)
        b = np.array([bm25[v] for v in ids], dtype=np.float64)
        w = dense_weight(snap, tokens, lexical)  # paraphrases lean on the dense score
        fused = w * _minmax(d) + (1 - w) * _minmax(b)
        order = np.argsort(-fused, kind="stable")
        return [(ids[i], float(fused[i])) for i in order]

    def _hits(self, ranked: list[tuple[int, float]], top_k: int) -> list[Hit]:
        """The first `top_k` ranked passages the store still holds (an index may briefly hold
        rows of a page being written or removed: they are skipped, never shown)."""
        hits: list[Hit] = []
        at = 0
        while len(hits) < top_k and at < len(ranked):
            part = ranked[at:at + top_k - len(hits)]
            at += len(part)
            hits.extend(self._hits_of(part))
        return hits

    def _hits_of(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        """Hits of these ranked vec_ids, their passages, issues and articles read in three statements."""
        rows, issues, articles = self.archive.store.passages_in_context([v for v, _ in ranked])
        hits = []
        for vec_id, score in ranked:
            p = rows.get(vec_id)
            if p is None or p.issue_id not in issues:  # removed by an ingest that this snapshot predates
                continue
            hits.append(Hit(chunk_id=p.id, text=p.text, score=score,
                            citation=make_citation(issues[p.issue_id], articles.get(p.article_id), p),
                            issue_id=p.issue_id, article_id=p.article_id))
        return hits


def scope_caveat(query: Query, dropped: tuple[str, ...]) -> str | None:
    """What the reader must know when retrieval left out the issue or the days the question
    names because no page matches them (`HybridRetriever.search_scoped`): the passages cited are of
    other issues or days. None when nothing was left out.

    Usage: ``scope_caveat(understand("第99999号报道了什么？"), ("issue",))`` → '档案中没有第99999号报纸，…'"""
    if not dropped:
        return None
    days = ""
    if query.date_from and query.date_to:
        end = chinese_date(query.date_to)
        if query.date_to[:4] == query.date_from[:4]:
            end = end[5:]  # '2021年11月29日至12月2日'
        days = chinese_date(query.date_from) + ("" if query.date_to == query.date_from else f"至{end}")
    number = f"第{query.issue}号" if query.issue else ""
    if "days" not in dropped:  # the issue is not of those days, or not in the archive at all
        return f"档案中没有{days + '的' if days else ''}{number}报纸，以下引自其他各期。"
    if "issue" in dropped or not number:
        return f"档案中没有{days}出版的{number}报纸，以下引自其他日期{'和各期' if number else ''}。"
    return f"档案中的{number}不是{days}出版的，以下引自{number}。"
