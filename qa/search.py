"""search: the seam between the archive's store and its search engine (dense + BM25 + filters).

The store (qa/store.py) is the source of truth and holds every passage's vector; a search index is
derived from it and keyed by the store's `vec_id`. One module per engine implements the two small
interfaces below, chosen by `QA_SEARCH_BACKEND` through `open_search_index` (no other code names
an engine):

- ``faiss`` (qa/search_faiss.py): segments of FAISS vectors + BM25 postings in the index folder.
- ``milvus`` (qa/search_milvus.py): one Milvus collection (Milvus Lite file or a server).

Writing a page (always under the archive's writer lock)::

    staged = index.stage(tx, rows)   # inside the store transaction that writes the page
    ...                              # the store commits
    index.commit(staged)             # after the commit: buffer it / drop superseded rows
    index.refresh()                  # after a batch: make it searchable (rebuild=True: from the store)

Reading: ``view = index.snapshot()`` then `where`, `dense_top`, `dense_of`, `lexical_search`,
`idf`, `holds`: everything keyed by vec_id. A hit whose vec_id the store no longer has is
dropped by the retriever, so a page is visible only once the store has committed it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

BACKENDS = {"faiss": "qa.search_faiss:FaissIndex", "milvus": "qa.search_milvus:MilvusIndex"}


def date_int(date: str | None) -> int:
    """'2021-11-30' → 20211130 (a partial date compares as its string does); None → 0."""
    if not date:
        return 0
    return int(date.replace("-", "")[:8].ljust(8, "0"))


@dataclass
class IndexRows:
    """What a search index holds of some passages, one entry per passage (a page's, or a batch
    read back from the store). `tokens` are qa.lexical.passage_tokens; `texts` the headline and
    text, for an engine that tokenizes by itself."""

    vec_ids: np.ndarray
    vectors: np.ndarray  # float32, as a rebuild from the store would see them
    tokens: list[list[str]]
    texts: list[str]
    dates: list[int]
    issue_nos: list[str | None]
    pages: list[int | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    issue_ids: list[str] = field(default_factory=list)
    article_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.vec_ids)


class LexicalHits(Protocol):
    """BM25 results of one query under one filter."""

    def top(self, k: int) -> dict[int, float]:
        """The best `k` matching passages, vec_id → BM25 score (only scores > 0)."""

    def best(self) -> int | None:
        """The vec_id of the best-scoring passage (None when nothing matches)."""

    def scores_of(self, vec_ids: list[int]) -> np.ndarray:
        """BM25 scores of the given passages (0 where a term is missing or the filter excludes it)."""


class SearchView(Protocol):
    """What retrieval reads, frozen at one store generation where the engine allows it."""

    generation: int

    @property
    def size(self) -> int:
        """Live passages."""

    def where(self, date_from: str | None, date_to: str | None, issue: str | None) -> Any:
        """An engine-specific filter for the date range / issue number (each optional); None = all."""

    def any_match(self, flt: Any) -> bool:
        """Whether some live passage passes the filter."""

    def dense_top(self, qvec: np.ndarray, k: int, flt: Any = None) -> dict[int, float]:
        """The best `k` passages by inner product with `qvec`, vec_id → score."""

    def dense_of(self, qvec: np.ndarray, vec_ids: list[int]) -> np.ndarray:
        """Inner products of `qvec` with the given passages' vectors."""

    def lexical_search(self, tokens: list[str], flt: Any = None) -> LexicalHits:
        """BM25 over qa.lexical tokens of the question."""

    def idf(self, token: str) -> float:
        """BM25 inverse document frequency of a token (unseen tokens weigh most)."""

    def holds(self, vec_id: int, tokens: set[str]) -> set[str]:
        """Which of `tokens` the passage contains."""


class SearchIndex(Protocol):
    """The write side and the snapshots of one engine. `recover` is set by the archive: it brings
    a lagging index up to the store under the writer lock (None when another writer is busy)."""

    recover: Callable[[], int | None]

    def stage(self, tx: Any, rows: IndexRows, source: str) -> Any:
        """Inside the store transaction writing the page `source` (rows may be empty)."""

    def commit(self, staged: Any) -> None:
        """After that transaction committed."""

    def removed(self, source_or_id: str) -> None:
        """After a page's removal committed."""

    def cleared(self) -> None:
        """After the store was emptied."""

    def reset(self) -> None:
        """The writer is done (or died): forget what was buffered and not published."""

    def derived_generation(self) -> int | None:
        """The store generation the index was last brought up to (None: never built)."""

    def refresh(self, rebuild: bool = False) -> int:
        """Bring the index up to the store (rebuild: afresh from it, never re-embedding)."""

    def snapshot(self) -> SearchView:
        """The view for retrieval."""


def open_search_index(directory: Path, store, backend: str | None = None) -> SearchIndex:
    """The search index configured by QA_SEARCH_BACKEND (or `backend`) for the archive in `directory`.

    Usage: ``index = open_search_index(Path("index"), store)``"""
    if backend is None:
        from qa.config import get_settings

        backend = get_settings().search_backend
    try:
        module, name = BACKENDS[backend].split(":")
    except KeyError:
        raise ValueError(f"unknown search backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    return getattr(importlib.import_module(module), name)(Path(directory), store)
