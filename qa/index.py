"""index: the archive on disk — SQLite store (source of truth) plus search files derived from it
in immutable segments, so adding or removing a page never rebuilds the archive.

``derived/`` holds:

- ``seg-<name>/``: one immutable segment of at most 65,536 passages: ``vec_ids.npy`` (the store's
  ids), ``dates.npy`` (int32 yyyymmdd, 0 = unknown) and ``issues.npy`` (codes into
  ``issue_table.json``) for filters, ``vectors.faiss`` (8-bit scalar quantized: exact below
  ``IVF_MIN_ROWS`` passages, IVF above it with an nprobe tuned at build time for recall@10 ≥
  ``TARGET_RECALL`` of an exact scan), and BM25 postings (``bm25_*.npy``, see `Postings`).
- ``gen-<N>/``: one published generation: ``segments.json`` (its segments, in order) and
  ``dead-<segment>.npy`` (rows of a segment whose passages have left the store since).
- ``CURRENT``: the name of the current generation, switched by an atomic rename.

Writing: every page is one SQLite transaction that bumps the manifest's `generation`; its vectors
and term ids are buffered and flushed into a new segment every `FLUSH_ROWS` passages.
`refresh_derived` publishes generation N = the previous generation's segments + the new ones +
tombstones for passages gone from the store, then merges small segments by size tier (and
rewrites mostly dead ones): a day's pages cost one small segment, never the archive. A reader (the
server) loads what CURRENT names, reusing the segments it already holds. A crash between the two
steps leaves CURRENT behind the store's generation; the next writer or server start covers what
the store holds and no segment does (tokens re-derived from the text, vectors from the store).

Usage::

    archive = Archive(Path("index"))
    with archive.writer():
        archive.write_pages([(page, passages, vectors, tokens), ...])
        archive.refresh_derived()
    snap = archive.snapshot()       # immutable view for retrieval; reloads after a completed ingest
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from qa.chunk import Passage
from qa.lexical import MAX_SEGMENT_ROWS, LexicalIndex, Postings, passage_tokens
from qa.parse import Page
from qa.store import IndexBusyError, Store, dequantize, open_store, quantize

DERIVED = "derived"
_KEEP_GENERATIONS = 2  # a server may still be loading the previous one
FLUSH_ROWS = 15_000  # buffered passages written as one new segment (MERGE_AT of them fit one segment)
IVF_MIN_ROWS = 20_000  # segments this large get an approximate (IVF) index
TARGET_RECALL = 0.985  # per segment recall@10 of the IVF index against exact search
MERGE_AT = 4  # this many segments of one size tier are merged into one
MAX_DEAD_SHARE = 0.3  # a segment with more removed rows than this is rewritten


def _date_int(date: str | None) -> int:
    """'2021-11-30' → 20211130 (a partial date compares as its string does); None → 0."""
    if not date:
        return 0
    return int(date.replace("-", "")[:8].ljust(8, "0"))


@dataclass
class Segment:
    """One immutable piece of the search files (see the module doc)."""

    name: str
    vec_ids: np.ndarray
    dates: np.ndarray
    issues: np.ndarray
    issue_table: list[str]
    vectors: faiss.Index  # ids = rows
    nprobe: int  # 0: exact flat index
    postings: Postings

    @property
    def size(self) -> int:
        return len(self.vec_ids)

    @classmethod
    def build(cls, vec_ids: np.ndarray, vectors: np.ndarray, dates: list, issue_nos: list,
              postings: Postings) -> "Segment":
        table = sorted({n for n in issue_nos if n is not None})
        code = {n: i for i, n in enumerate(table)}
        index, nprobe = _vector_index(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(name=uuid.uuid4().hex[:16], vec_ids=np.asarray(vec_ids, dtype=np.int64),
                   dates=np.array([d if isinstance(d, (int, np.integer)) else _date_int(d) for d in dates],
                                  dtype=np.int32),
                   issues=np.array([code.get(n, -1) for n in issue_nos], dtype=np.int32),
                   issue_table=table, vectors=index, nprobe=nprobe, postings=postings)

    def save(self, base: Path) -> None:
        """Write the segment as `base/seg-<name>` (complete and fsynced before it is named)."""
        tmp = Path(tempfile.mkdtemp(prefix=".seg-tmp-", dir=base))
        np.save(tmp / "vec_ids.npy", self.vec_ids)
        np.save(tmp / "dates.npy", self.dates)
        np.save(tmp / "issues.npy", self.issues)
        (tmp / "meta.json").write_text(json.dumps({"issue_table": self.issue_table, "nprobe": self.nprobe},
                                                  ensure_ascii=False))
        faiss.write_index(self.vectors, str(tmp / "vectors.faiss"))
        self.postings.save(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, base / f"seg-{self.name}")

    @classmethod
    def load(cls, base: Path, name: str, vectors: bool = True) -> "Segment":
        """A saved segment; arrays are memory-mapped (shared through the page cache), the vector
        index read whole unless `vectors` is False (a writer merging segments takes vectors from the store)."""
        folder = base / f"seg-{name}"
        meta = json.loads((folder / "meta.json").read_text())
        return cls(name=name, vec_ids=segment_ids(base, name), dates=_mapped(folder / "dates.npy"),
                   issues=_mapped(folder / "issues.npy"), issue_table=meta["issue_table"],
                   vectors=faiss.read_index(str(folder / "vectors.faiss")) if vectors else None,
                   nprobe=meta["nprobe"], postings=Postings.load(folder))

    def issue_strings(self) -> list[str | None]:
        return [self.issue_table[c] if c >= 0 else None for c in self.issues.tolist()]

    def search(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the best `k` rows among `allowed` (None = all). A restricted IVF
        search probes more lists the fewer rows are allowed, down to an exact scan of just them
        (`exact`: always scan every list)."""
        _single_threaded()
        n_ok = self.size if allowed is None else int(allowed.sum())
        if n_ok == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        bitmap = sel = None
        if allowed is not None and n_ok < self.size:
            bitmap = np.packbits(allowed, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if self.nprobe:
            nlist = faiss.extract_index_ivf(self.vectors).nlist
            nprobe = nlist if exact else min(nlist, math.ceil(self.nprobe * self.size / n_ok))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        scores, rows = self.vectors.search(qvec.reshape(1, -1), min(k, n_ok), params=params)
        del bitmap  # kept alive until the search is done
        ok = rows[0] >= 0
        return rows[0][ok], scores[0][ok]


_SINGLE_THREADED = False


def _mapped(path: Path) -> np.ndarray:
    """A saved array, memory-mapped (shared through the page cache) as a plain ndarray."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


def _single_threaded() -> None:
    """One query's search gains nothing from OpenMP threads, and on a busy machine waiting for
    them costs ten times the search (measured: 24 ms → 1.5 ms per 16k-vector segment)."""
    global _SINGLE_THREADED
    if not _SINGLE_THREADED:
        faiss.omp_set_num_threads(1)
        _SINGLE_THREADED = True


def segment_ids(base: Path, name: str) -> np.ndarray:
    """The vec_ids of a saved segment (memory-mapped)."""
    return np.load(base / f"seg-{name}" / "vec_ids.npy", mmap_mode="r").view(np.ndarray)


def _vector_index(vectors: np.ndarray) -> tuple[faiss.Index, int]:
    """8-bit scalar quantized inner-product index: flat (exact) when small, else IVF with a tuned nprobe."""
    n, dim = vectors.shape
    if n < IVF_MIN_ROWS:
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        if n:
            index.train(vectors)
            index.add(vectors)
        return index, 0
    nlist = int(2 * math.sqrt(n))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1
    index.train(vectors)
    index.add(vectors)
    return index, _tune_nprobe(index, vectors, nlist)


def _tune_nprobe(index: faiss.Index, vectors: np.ndarray, nlist: int, queries: int = 100) -> int:
    """The smallest nprobe whose recall@10 against an exact scan of the same codes reaches
    TARGET_RECALL, on queries between two random passages (harder than a passage itself)."""
    rng = np.random.default_rng(0)
    q = vectors[rng.integers(0, len(vectors), queries)] + vectors[rng.integers(0, len(vectors), queries)]
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    _, exact = index.search(q, 10, params=faiss.SearchParametersIVF(nprobe=nlist))
    nprobe = 4
    while nprobe < nlist:
        _, got = index.search(q, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.tolist(), got.tolist())])
        if recall >= TARGET_RECALL:
            return nprobe
        nprobe *= 2
    return nlist


@dataclass
class Snapshot:
    """What retrieval needs, frozen at one generation of the archive. Positions number the rows of
    all segments in order (removed rows included, never returned)."""

    generation: int
    segments: list[Segment]
    alive: list[np.ndarray | None]  # per segment: rows still in the store (None = all)
    lexical: LexicalIndex
    store: Store
    offsets: np.ndarray = field(init=False)
    vec_ids: np.ndarray = field(init=False)  # store id of each position

    def __post_init__(self) -> None:
        self.offsets = np.cumsum([0] + [s.size for s in self.segments])
        self.vec_ids = (np.concatenate([s.vec_ids for s in self.segments]) if self.segments
                        else np.zeros(0, np.int64))

    @property
    def size(self) -> int:
        """Live passages."""
        return self.lexical.size

    @property
    def rows(self) -> int:
        """Positions (live and removed)."""
        return int(self.offsets[-1])

    @property
    def ids(self) -> list[str]:
        """Passage ids of the live positions, in order (from the store; for checks, not queries)."""
        live = self.vec_ids[self.live_mask()]
        rows = self.store.passages_by_vec_id(live.tolist())
        return [rows[v].id for v in live.tolist() if v in rows]

    def live_mask(self) -> np.ndarray:
        return np.concatenate([np.ones(s.size, bool) if a is None else a
                               for s, a in zip(self.segments, self.alive)] or [np.zeros(0, bool)])

    def filter_mask(self, date_from: str | None, date_to: str | None, issue: str | None) -> np.ndarray:
        """Live positions within [date_from, date_to] and of issue number `issue` (each optional);
        per-segment numpy comparisons, no loop over passages."""
        lo, hi = _date_int(date_from) if date_from else 0, _date_int(date_to) if date_to else 99_999_999
        parts = []
        for seg, alive in zip(self.segments, self.alive):
            m = np.ones(seg.size, bool) if alive is None else alive.copy()
            if date_from or date_to:
                m &= (seg.dates > 0) & (seg.dates >= lo) & (seg.dates <= hi)
            if issue:
                code = seg.issue_table.index(issue) if issue in seg.issue_table else -2
                m &= seg.issues == code
            parts.append(m)
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def dense(self, qvec: np.ndarray, k: int, mask: np.ndarray | None = None, exact: bool = False) -> dict[int, float]:
        """The best `k` live positions by inner product (within `mask`), position → score;
        `exact` scans every vector (for measuring the approximate index against)."""
        found: list[tuple[float, int]] = []
        for i, (seg, alive) in enumerate(zip(self.segments, self.alive)):
            allowed = alive if mask is None else mask[self.offsets[i]:self.offsets[i + 1]]
            rows, scores = seg.search(qvec, k, allowed, exact)
            found.extend(zip(scores.tolist(), (rows + self.offsets[i]).tolist()))
        found.sort(key=lambda x: -x[0])
        return {pos: score for score, pos in found[:k]}

    def dense_scores(self, qvec: np.ndarray, positions: list[int]) -> np.ndarray:
        """Exact inner products of the query with the vectors at `positions` (as the index stores them)."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), np.float32)
        seg_of = np.searchsorted(self.offsets, positions, side="right") - 1
        for i in np.unique(seg_of).tolist():
            seg = self.segments[i]
            allowed = np.zeros(seg.size, bool)
            allowed[positions[seg_of == i] - self.offsets[i]] = True
            rows, scores = seg.search(qvec, int(allowed.sum()), allowed, exact=True)
            by_row = dict(zip(rows.tolist(), scores.tolist()))
            for j in np.flatnonzero(seg_of == i).tolist():
                out[j] = by_row.get(int(positions[j] - self.offsets[i]), 0.0)
        return out


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


@dataclass
class _Buffer:
    """Passages written to the store but not yet in a segment (bounded by FLUSH_ROWS)."""

    vec_ids: list[np.ndarray] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    docs: list[np.ndarray] = field(default_factory=list)
    dates: list = field(default_factory=list)
    issue_nos: list = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.docs)


class Archive:
    """The index directory: write pages, remove pages, and hand out snapshots for retrieval.
    Each segment's vector index is chosen by its size (exact below IVF_MIN_ROWS, IVF above)."""

    def __init__(self, directory: Path, store: Store | None = None):
        self.directory = Path(directory)
        self.store = store or open_store(self.directory)  # the configured store (QA_STORE_URL)
        self.base = self.directory / DERIVED
        self._snapshot: Snapshot | None = None
        self._snap_lock = threading.Lock()
        self._segments: dict[str, Segment] = {}  # loaded segments, shared by snapshots
        self._buffer = _Buffer()
        self._unpublished: list[str] = []  # segments written by this writer, not yet published

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Exclusive write access across processes (and machines, with a shared store): the
        store's writer lock (IndexBusyError when held elsewhere); released even on SIGKILL."""
        with self.store.writer_lock():
            try:
                yield
            finally:
                # What was buffered or flushed but not published is the store's to recover from now.
                self._buffer, self._unpublished = _Buffer(), []

    def write_page(self, page: Page, passages: list[Passage], vectors: np.ndarray, tokens: list[list[str]]) -> None:
        """Store one page atomically (replacing any earlier version). Call inside `writer()`."""
        self.write_pages([(page, passages, vectors, tokens)])

    def write_pages(self, batch) -> None:
        """Store pages given as (page, passages, vectors, tokens), one transaction each; their
        search files follow at the next `refresh_derived` (one update for the whole batch).
        The bulk path: call it with many pages at a time, then `refresh_derived` once; memory
        stays bounded (a segment is flushed every FLUSH_ROWS passages). Call inside `writer()`.

        Usage: ``archive.write_pages([(page, passages, vectors, tokens)]); archive.refresh_derived()``"""
        self.base.mkdir(exist_ok=True)
        for page, passages, vectors, tokens in batch:
            with self.store.transaction() as tx:
                vec_ids = self.store.replace_page(tx, page, passages, vectors)
                ids = self.store.term_ids(tx, {t for toks in tokens for t in toks})
                self.store.bump_generation(tx)
            if not passages:
                continue
            buf = self._buffer
            buf.vec_ids.append(np.asarray(vec_ids, dtype=np.int64))
            buf.vectors.append(dequantize(quantize(vectors)))  # what a rebuild from the store would see
            buf.docs.extend(np.fromiter((ids[t] for t in toks), np.int32, len(toks)) for toks in tokens)
            buf.dates.extend([_date_int(page.issue.date)] * len(passages))
            buf.issue_nos.extend([page.issue.issue_no] * len(passages))
            if buf.rows >= FLUSH_ROWS:
                self._flush()

    def _flush(self) -> None:
        buf = self._buffer
        if buf.rows:
            seg = Segment.build(np.concatenate(buf.vec_ids), np.concatenate(buf.vectors), buf.dates,
                                buf.issue_nos, Postings.from_docs(buf.docs))
            seg.save(self.base)
            self._unpublished.append(seg.name)
        self._buffer = _Buffer()

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
        try:
            name = (self.base / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return int(name.removeprefix("gen-"))

    def is_current(self) -> bool:
        return self.derived_generation() == self.store.generation()

    def refresh_derived(self, rebuild: bool = False) -> int:
        """Bring the search files up to the store: previous segments + new ones + tombstones, then
        merges (or, with `rebuild` or when no usable generation exists, all segments afresh from
        the store, never re-embedding). Call inside `writer()`. Returns the generation now current."""
        if rebuild:  # a new generation, so running servers switch to the rebuilt files
            with self.store.transaction() as tx:
                self.store.bump_generation(tx)
        gen = self.store.generation()
        self.base.mkdir(exist_ok=True)
        names = None if rebuild else self._published_names()
        if names is not None and self.derived_generation() == gen and not self._buffer.rows:
            return gen
        self._flush()
        names = (names or []) + self._unpublished
        live = self.store.vec_ids()
        covered = np.concatenate([segment_ids(self.base, n) for n in names] or [np.zeros(0, np.int64)])
        missing = live[~np.isin(live, covered)]
        names += self._segments_from_store(missing)
        alive = {n: np.isin(segment_ids(self.base, n), live) for n in names}
        names = self._compact(names, alive)
        self._publish(gen, names, {n: ~alive[n] for n in names if not alive[n].all()})
        self._unpublished = []
        return gen

    def _segment(self, name: str) -> Segment:
        seg = self._segments.get(name)
        if seg is None:
            seg = self._segments[name] = Segment.load(self.base, name)
        return seg

    def _published_names(self) -> list[str] | None:
        gen = self.derived_generation()
        try:
            return json.loads((self.base / f"gen-{gen:08d}" / "segments.json").read_text())
        except (TypeError, FileNotFoundError, json.JSONDecodeError):
            return None  # none yet, or written by an older format: rebuild

    def _segments_from_store(self, vec_ids: np.ndarray) -> list[str]:
        """Segments of the stored passages `vec_ids` (tokens re-derived from their text), a
        segment at a time so memory stays bounded."""
        names: list[str] = []
        buf = _Buffer()
        for rows in self.store.iter_index_rows(vec_ids):
            tokens = [passage_tokens(h, t) for h, t in zip(rows["headlines"], rows["texts"])]
            with self.store.transaction() as tx:
                ids = self.store.term_ids(tx, {t for toks in tokens for t in toks})
            buf.vec_ids.append(rows["vec_ids"])
            buf.vectors.append(rows["vectors"])
            buf.docs.extend(np.fromiter((ids[t] for t in toks), np.int32, len(toks)) for toks in tokens)
            buf.dates.extend(rows["dates"])
            buf.issue_nos.extend(rows["issue_nos"])
            if buf.rows >= MAX_SEGMENT_ROWS - 2000:
                names.append(self._save_buffer(buf))
                buf = _Buffer()
        if buf.rows:
            names.append(self._save_buffer(buf))
        return names

    def _save_buffer(self, buf: _Buffer) -> str:
        seg = Segment.build(np.concatenate(buf.vec_ids), np.concatenate(buf.vectors), buf.dates, buf.issue_nos,
                            Postings.from_docs(buf.docs))
        seg.save(self.base)
        return seg.name

    def _compact(self, names: list[str], alive: dict[str, np.ndarray]) -> list[str]:
        """Drop empty segments, rewrite mostly dead ones, merge MERGE_AT segments of one size tier
        (sizes within a factor of 4) while the result fits in a segment."""
        names = [n for n in names if alive[n].any()]
        while True:
            counts = {n: int(alive[n].sum()) for n in names}
            group = next(([n] for n in names if counts[n] < (1 - MAX_DEAD_SHARE) * len(alive[n])), None)
            if group is None:
                tiers: dict[int, list[str]] = {}
                for n in names:
                    tiers.setdefault(int(math.log(max(counts[n], 1), 4)), []).append(n)
                for members in tiers.values():
                    fitting = []
                    for n in members:
                        if sum(counts[m] for m in fitting) + counts[n] <= MAX_SEGMENT_ROWS:
                            fitting.append(n)
                    if len(fitting) >= MERGE_AT:
                        group = fitting
                        break
            if group is None:
                return names
            merged = self._merge(group, alive)
            alive[merged] = np.ones(sum(counts[n] for n in group), bool)
            at = names.index(group[0])
            names = [n for n in names[:at] if n not in group] + [merged] + [n for n in names[at:] if n not in group]

    def _merge(self, group: list[str], alive: dict[str, np.ndarray]) -> str:
        segs = [Segment.load(self.base, n, vectors=False) for n in group]
        keep = [alive[n] for n in group]
        vec_ids = np.concatenate([s.vec_ids[k] for s, k in zip(segs, keep)])
        issue_nos = [n for s, k in zip(segs, keep) for n, kk in zip(s.issue_strings(), k.tolist()) if kk]
        seg = Segment.build(vec_ids, self.store.vectors(vec_ids),
                            np.concatenate([s.dates[k] for s, k in zip(segs, keep)]).tolist(), issue_nos,
                            Postings.merge([(s.postings, k) for s, k in zip(segs, keep)]))
        seg.save(self.base)
        return seg.name

    def _publish(self, gen: int, names: list[str], dead: dict[str, np.ndarray]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=self.base))
        (tmp / "segments.json").write_text(json.dumps(names))
        for name, rows in dead.items():
            np.save(tmp / f"dead-{name}.npy", rows)
        _fsync_tree(tmp)
        final = self.base / f"gen-{gen:08d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        pointer = self.base / "CURRENT.tmp"
        pointer.write_text(final.name)
        with open(pointer, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.base / "CURRENT")
        _fsync_dir(self.base)
        self._prune(keep=final.name)

    def _prune(self, keep: str) -> None:
        gens = sorted(p for p in self.base.glob("gen-*") if p.is_dir())
        kept = [g for g in gens[-_KEEP_GENERATIONS:]] + [self.base / keep]
        for old in gens:
            if old not in kept:
                shutil.rmtree(old, ignore_errors=True)
        used: set[str] = set()
        for g in kept:
            try:
                used.update(json.loads((g / "segments.json").read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        for seg in self.base.glob("seg-*"):
            if seg.name.removeprefix("seg-") not in used:
                shutil.rmtree(seg, ignore_errors=True)
                self._segments.pop(seg.name.removeprefix("seg-"), None)
        for tmp in [*self.base.glob(".gen-tmp-*"), *self.base.glob(".seg-tmp-*")]:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The newest complete snapshot; swapped atomically when a completed ingest lands.

        If the search files lag behind the store and no one is writing (a crash left them
        behind), they are brought up to date here first."""
        derived = self.derived_generation()
        snap = self._snapshot
        if snap is not None and snap.generation == derived == self.store.generation():
            return snap
        if derived != self.store.generation() or self._published_names() is None:
            recovered = self._recover()
            if recovered is not None:
                derived = recovered
        if snap is not None and snap.generation == derived:
            return snap
        if derived is None:
            raise RuntimeError(f"index {self.directory} has no search files yet; run: qa ingest")
        with self._snap_lock:
            if self._snapshot is None or self._snapshot.generation != derived:
                try:
                    self._snapshot = self._load(derived)
                except FileNotFoundError:
                    # Two quick publishes pruned the one we read CURRENT for: take the newest.
                    self._snapshot = self._load(self.derived_generation())
            return self._snapshot

    def _recover(self) -> int | None:
        try:
            with self.writer():
                return self.refresh_derived()
        except IndexBusyError:
            return None  # a writer is at work; it will publish a new generation itself

    def _load(self, generation: int) -> Snapshot:
        folder = self.base / f"gen-{generation:08d}"
        names = json.loads((folder / "segments.json").read_text())
        segments = [self._segment(n) for n in names]
        alive = []
        for seg in segments:
            dead_file = folder / f"dead-{seg.name}.npy"
            alive.append(~np.load(dead_file) if dead_file.exists() else None)
        for name in set(self._segments) - set(names) - set(self._unpublished):
            del self._segments[name]  # no longer published; a snapshot holding it keeps its own reference
        lookup = lambda terms: self.store.term_ids(self.store.conn, terms, add=False)  # noqa: E731
        return Snapshot(generation=generation, segments=segments, alive=alive,
                        lexical=LexicalIndex([s.postings for s in segments], alive, lookup), store=self.store)
