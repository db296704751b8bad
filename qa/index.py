"""index: the archive on disk — SQLite store (source of truth) plus derived FAISS and BM25 files.

Crash safety: every page is written in one SQLite transaction that also bumps the manifest's
`generation`. The FAISS and BM25 files are then rebuilt from the stored vectors and tokens (never
re-embedded) into a new `derived/gen-N/` folder, and `derived/CURRENT` is switched to it with an
atomic rename. A reader (the server) loads whatever CURRENT names; a crash between the two steps
leaves CURRENT behind the store's generation, and the next writer or server start rebuilds it.

Usage::

    archive = Archive(Path("index"))
    archive.write_pages([(page, passages, vectors, tokens)], embed_model="...", dim=384)
    snap = archive.snapshot()       # immutable view for retrieval; reloads after a completed ingest
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from qa.chunk import Passage
from qa.lexical import LexicalIndex
from qa.parse import Page
from qa.store import Store

DERIVED = "derived"
_KEEP_GENERATIONS = 2  # a server may still be loading the previous one


class IndexBusyError(RuntimeError):
    """Another process is writing this index."""


@dataclass
class Snapshot:
    """What retrieval needs, frozen at one generation of the archive."""

    generation: int
    ids: list[str]  # passage ids; position i in the lexical index ↔ ids[i]
    vec_ids: np.ndarray  # int64 FAISS ids, same order
    dates: list[str | None]
    issue_nos: list[str | None]
    vectors: faiss.Index  # IndexIDMap keyed by vec_ids
    lexical: LexicalIndex
    position: dict[int, int] = field(init=False)  # vec_id → position

    def __post_init__(self) -> None:
        self.position = {int(v): i for i, v in enumerate(self.vec_ids)}

    @property
    def size(self) -> int:
        return len(self.ids)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb+") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(root))


class Archive:
    """The index directory: write pages, remove pages, and hand out snapshots for retrieval."""

    def __init__(self, directory: Path, faiss_factory: str = "Flat"):
        self.directory = Path(directory)
        self.store = Store.open(self.directory)
        self.faiss_factory = faiss_factory
        self._snapshot: Snapshot | None = None
        self._snap_lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Exclusive write access across processes (flock); released even on SIGKILL."""
        lock_path = self.directory / ".writer.lock"
        fh = open(lock_path, "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusyError(f"another process is writing the index {self.directory}; try again later")
            yield
        finally:
            fh.close()

    def write_page(self, page: Page, passages: list[Passage], vectors: np.ndarray, tokens: list[list[str]]) -> None:
        """Store one page atomically (replacing any earlier version). Call inside `writer()`."""
        with self.store.transaction() as tx:
            self.store.replace_page(tx, page, passages, vectors, tokens)
            self.store.bump_generation(tx)

    def remove_page(self, source_or_id: str) -> bool:
        """Take a page out (by file name or issue id). Call inside `writer()`."""
        with self.store.transaction() as tx:
            removed = self.store.remove_page(tx, source_or_id)
            if removed:
                self.store.bump_generation(tx)
        return removed

    def clear(self) -> None:
        """Empty the archive (for --rebuild). Call inside `writer()`."""
        with self.store.transaction() as tx:
            self.store.clear(tx)
            self.store.bump_generation(tx)

    def derived_generation(self) -> int | None:
        current = self.directory / DERIVED / "CURRENT"
        try:
            name = current.read_text().strip()
        except FileNotFoundError:
            return None
        return int(name.removeprefix("gen-"))

    def is_current(self) -> bool:
        return self.derived_generation() == self.store.generation()

    def refresh_derived(self) -> int:
        """Rebuild FAISS and BM25 from the store if they lag behind it. Call inside `writer()`.

        Returns the generation now current."""
        gen = self.store.generation()
        if self.derived_generation() == gen:
            return gen
        base = self.directory / DERIVED
        base.mkdir(exist_ok=True)
        ids, vec_ids, dates, issue_nos, tokens, vec_batches = [], [], [], [], [], []
        for rows, vecs in self.store.iter_index_rows():
            for r in rows:
                ids.append(r["id"])
                vec_ids.append(r["vec_id"])
                dates.append(r["date"])
                issue_nos.append(r["issue_no"])
                tokens.append(r["tokens"].split())
            vec_batches.append(vecs)
        dim = int(self.store.manifest().get("embed_dim", "0") or 0)
        vectors = np.concatenate(vec_batches) if vec_batches else np.zeros((0, max(dim, 1)), np.float32)
        index = self._build_faiss(vectors, np.asarray(vec_ids, dtype=np.int64))
        lexical = LexicalIndex.build(tokens)

        tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=base))
        faiss.write_index(index, str(tmp / "vectors.faiss"))
        lexical.save(tmp / "bm25")
        (tmp / "passages.json").write_text(
            json.dumps({"generation": gen, "ids": ids, "dates": dates, "issue_nos": issue_nos},
                       ensure_ascii=False)
        )
        np.save(tmp / "vec_ids.npy", np.asarray(vec_ids, dtype=np.int64))
        _fsync_tree(tmp)
        final = base / f"gen-{gen:08d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        pointer = base / "CURRENT.tmp"
        pointer.write_text(final.name)
        with open(pointer, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, base / "CURRENT")
        _fsync_dir(base)
        self._prune(base, keep=final.name)
        return gen

    def _build_faiss(self, vectors: np.ndarray, vec_ids: np.ndarray) -> faiss.Index:
        dim = vectors.shape[1]
        n = len(vectors)
        factory = self.faiss_factory
        # Trained index types need enough vectors; small archives fall back to exact search.
        if factory != "Flat" and n < 10_000:
            factory = "Flat"
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not inner.is_trained and n:
            inner.train(vectors)
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.make_direct_map()  # fusion reconstructs lexical-only candidates' vectors by id
        index = faiss.IndexIDMap2(inner)
        if n:
            index.add_with_ids(vectors, vec_ids)
        return index

    @staticmethod
    def _prune(base: Path, keep: str) -> None:
        gens = sorted(p for p in base.glob("gen-*") if p.is_dir())
        for old in gens[:-_KEEP_GENERATIONS]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
        for tmp in base.glob(".gen-tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The newest complete snapshot; swapped atomically when a completed ingest lands.

        If the search files lag behind the store and no one is writing (a crash left them
        behind), they are rebuilt here first."""
        derived = self.derived_generation()
        if derived != self.store.generation():
            recovered = self._recover()
            if recovered is not None:
                derived = recovered
        snap = self._snapshot
        if snap is not None and snap.generation == derived:
            return snap
        if derived is None:
            raise RuntimeError(f"index {self.directory} has no search files yet; run: qa ingest")
        with self._snap_lock:
            if self._snapshot is None or self._snapshot.generation != derived:
                try:
                    self._snapshot = self._load(self.directory / DERIVED / f"gen-{derived:08d}", derived)
                except FileNotFoundError:
                    # Two quick publishes pruned the one we read CURRENT for: take the newest.
                    newest = self.derived_generation()
                    self._snapshot = self._load(self.directory / DERIVED / f"gen-{newest:08d}", newest)
            return self._snapshot

    def _recover(self) -> int | None:
        try:
            with self.writer():
                return self.refresh_derived()
        except IndexBusyError:
            return None  # a writer is at work; it will publish a new generation itself

    @staticmethod
    def _load(folder: Path, generation: int) -> Snapshot:
        meta = json.loads((folder / "passages.json").read_text())
        return Snapshot(
            generation=generation,
            ids=meta["ids"],
            vec_ids=np.load(folder / "vec_ids.npy"),
            dates=meta["dates"],
            issue_nos=meta["issue_nos"],
            vectors=faiss.read_index(str(folder / "vectors.faiss")),
            lexical=LexicalIndex.load(folder / "bm25"),
        )
