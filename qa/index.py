"""index: the archive — the store (source of truth: issues, articles, passages with their vectors)
composed with a search index derived from it (qa.search: FAISS segments in the index folder by
default, or a Milvus collection), so retrieval reads one `snapshot()` whatever the engines.

Writing pages is one store transaction (a savepoint per page); the search index stages each page
inside it (Milvus gets the new rows before the store commits, so a committed page is always
searchable) and takes the commit after it (superseded rows deleted, FAISS buffers). Hits whose vec_id the store lacks are
dropped by the retriever, so no half-written page is ever visible.

Usage::

    archive = Archive(Path("index"))
    with archive.writer():
        archive.write_pages([(page, passages, vectors, tokens), ...])   # one transaction
        archive.refresh_derived()
    snap = archive.snapshot()       # a qa.search.SearchView; reloads after a completed ingest
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from qa.chunk import Passage
from qa.parse import Page, PageError
from qa.search import IndexRows, SearchView, date_int, open_search_index
from qa.store import IndexBusyError, Store, article_id, dequantize, open_store, quantize


class Archive:
    """The index directory: write pages, remove pages, and hand out snapshots for retrieval.
    `search` is the engine QA_SEARCH_BACKEND names (qa.search.open_search_index)."""

    def __init__(self, directory: Path, store: Store | None = None):
        self.directory = Path(directory)
        self.store = store or open_store(self.directory)  # the configured store (QA_STORE_URL)
        self.search = open_search_index(self.directory, self.store)
        self.search.recover = self._recover

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Exclusive write access across processes (and machines, with a shared store): the
        store's writer lock (IndexBusyError when held elsewhere); released even on SIGKILL."""
        with self.store.writer_lock():
            try:
                yield
            finally:
                self.search.reset()

    def write_page(self, page: Page, passages: list[Passage], vectors: np.ndarray, tokens: list[list[str]]) -> None:
        """Store one page atomically (replacing any earlier version); raises its PageError. Call
        inside `writer()`."""
        error = self.write_pages([(page, passages, vectors, tokens)])[0]
        if error is not None:
            raise error

    def write_pages(self, batch) -> list[PageError | None]:
        """Store pages given as (page, passages, vectors, tokens) in one store transaction, each
        page in a savepoint of its own: a page refused by the store (a PageError, returned in its
        place; None for a page written) is undone alone and the others are kept, so every page
        is all or nothing and a reader sees the batch's pages together or none of them. Any other
        error undoes the whole batch and is raised. Their search files follow at the next
        `refresh_derived` (one update for the whole batch). The bulk path: call it with many pages
        at a time, then `refresh_derived` once; memory stays bounded (FAISS flushes a segment
        every FLUSH_ROWS passages). Call inside `writer()`.

        Usage: ``errors = archive.write_pages([(page, passages, vectors, tokens)]); archive.refresh_derived()``"""
        errors: list[PageError | None] = []
        staged = []
        with self.store.transaction() as tx:
            for page, passages, vectors, tokens in batch:
                try:
                    with self.store.savepoint(tx):
                        vec_ids = self.store.replace_page(tx, page, passages, vectors)
                        rows = _rows(page, passages, vec_ids, vectors, tokens)
                        staged.append(self.search.stage(tx, rows, page.issue.source))
                    errors.append(None)
                except PageError as exc:
                    errors.append(exc)
            if staged:
                self.store.bump_generation(tx)
        for s in staged:
            self.search.commit(s)
        return errors

    def remove_page(self, source_or_id: str) -> bool:
        """Take a page out (by file name or issue id). Call inside `writer()`."""
        with self.store.transaction() as tx:
            removed = self.store.remove_page(tx, source_or_id)
            if removed:
                self.store.bump_generation(tx)
        if removed:
            self.search.removed(source_or_id)
        return removed

    def clear(self) -> None:
        """Empty the archive (for --rebuild). Call inside `writer()`."""
        with self.store.transaction() as tx:
            self.store.clear(tx)
            self.store.bump_generation(tx)
        self.search.cleared()

    def derived_generation(self) -> int | None:
        """The store generation the search index was last brought up to (None: never)."""
        return self.search.derived_generation()

    def is_current(self) -> bool:
        return self.derived_generation() == self.store.generation()

    def refresh_derived(self, rebuild: bool = False) -> int:
        """Bring the search index up to the store (with `rebuild`, afresh from the store, never
        re-embedding). Call inside `writer()`. Returns the generation now current."""
        if rebuild:  # a new generation, so running servers switch to the rebuilt index
            with self.store.transaction() as tx:
                self.store.bump_generation(tx)
        return self.search.refresh(rebuild=rebuild)

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> SearchView:
        """The newest complete view for retrieval; swapped atomically when a completed ingest
        lands. Search files lagging behind the store (a crashed writer) are caught up first
        when no one is writing."""
        return self.search.snapshot()

    def _recover(self) -> int | None:
        try:
            with self.writer():
                return self.refresh_derived()
        except IndexBusyError:
            return None  # a writer is at work; it will publish a new generation itself


def _rows(page: Page, passages: list[Passage], vec_ids: list[int], vectors: np.ndarray,
          tokens: list[list[str]]) -> IndexRows:
    """What the search index gets of one page's passages."""
    issue, n = page.issue, len(passages)
    headlines = {a.index: a.headline for a in page.articles}
    return IndexRows(
        vec_ids=np.asarray(vec_ids, dtype=np.int64),
        vectors=dequantize(quantize(vectors)) if n else np.zeros((0, 0), np.float32),  # as the store holds them
        tokens=tokens, texts=[_text(headlines.get(p.article_index), p.text) for p in passages],
        dates=[date_int(issue.date)] * n, issue_nos=[issue.issue_no] * n, pages=[issue.page] * n,
        sources=[issue.source] * n, issue_ids=[issue.id] * n,
        article_ids=[article_id(issue.id, p.article_index) for p in passages])


def _text(headline: str | None, text: str) -> str:
    return f"{headline}\n{text}" if headline else text
