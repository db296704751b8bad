"""search_faiss: the embedded search index: FAISS vectors and BM25 postings in immutable segments
under the index folder, so adding or removing a page never rebuilds the archive.

``derived/`` holds:

- ``seg-<name>/``: one immutable segment of at most 65,536 passages: ``vec_ids.npy`` (the store's
  ids), ``dates.npy`` (int32 yyyymmdd, 0 = unknown) and ``issues.npy`` (codes into
  ``issue_table.json``) for filters, ``vectors.faiss`` (8-bit scalar quantized residuals in the
  lists of the archive's coarse quantizer; a flat exact index while the archive has none yet),
  and BM25 postings (``bm25_*.npy``, see `Postings`).
- ``coarse-<name>/``: the coarse quantizer every IVF segment shares (`Coarse`): centroids trained
  once, by the first segment of ``IVF_MIN_ROWS`` passages (afresh at a rebuild), and the nprobe
  tuned on them for recall@10 ≥ ``TARGET_RECALL`` of an exact scan. A query is assigned to its
  lists once; each segment then scans just those lists, so the query costs the passages scanned
  (nprobe / nlist of the archive), however many segments there are.
- ``gen-<N>/``: one published generation: ``segments.json`` (its segments, in order) and
  ``dead-<segment>.npy`` (rows of a segment whose passages have left the store since).
- ``CURRENT``: the name of the current generation, switched by an atomic rename.

Writing: every page is one store transaction that bumps the manifest's `generation`; its vectors
and term ids are buffered and flushed into a new segment every `FLUSH_ROWS` passages; as soon as
MERGE_AT unpublished segments of one size tier exist they are merged (so a long ingest's memory
and its final refresh stay bounded by one segment's work, not by the number of pages).
`refresh` publishes generation N = the previous generation's segments + the new ones +
tombstones for passages gone from the store, then merges small segments by size tier (and
rewrites mostly dead ones): a day's pages cost one small segment, never the archive. A reader (the
server) loads what CURRENT names, reusing the segments it already holds. A crash between the two
steps leaves CURRENT behind the store's generation; the next writer or server start covers what
the store holds and no segment does (tokens re-derived from the text, vectors from the store).

Usage (through qa.index.Archive, which owns the store and the writer lock)::

    index = FaissIndex(Path("index"), store)
    staged = index.stage(tx, rows, source); ...; index.commit(staged); index.refresh()
    snap = index.snapshot()      # a `Snapshot`: positions inside, vec_ids at the qa.search seam
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import faiss
import numpy as np

from qa.lexical import MAX_SEGMENT_ROWS, LexicalIndex, Postings, passage_tokens
from qa.search import IndexRows, date_int

if TYPE_CHECKING:  # annotation only: the store hands itself in
    from qa.store import Store

DERIVED = "derived"
_KEEP_GENERATIONS = 2  # a server may still be loading the previous one
FLUSH_ROWS = 15_000  # buffered passages written as one new segment (MERGE_AT of them fit one segment)
MERGE_AT = 4  # this many segments of one size tier are merged into one
IVF_MIN_ROWS = MERGE_AT * FLUSH_ROWS  # the first segment this large trains the archive's coarse quantizer
# (k-means needs many rows per list to find real centres: trained on 15k rows for 1024 lists it
# needed nprobe 256 for the recall that 60k rows reach with 8, on the benchmark's vectors)
COARSE_LISTS = 1024  # lists of the coarse quantizer (fewer when trained on fewer rows)
ROWS_PER_LIST = 14  # ... at least this many training rows per list
TARGET_RECALL = 0.99  # recall@10 of the IVF search against an exact scan, when tuning nprobe
MIN_NPROBE = 8
EXACT_FILTER_ROWS = 8192  # a filter this narrow is scored exactly, row by row
RERANK = 64  # dense candidates (at least) re-scored from the store's vectors
MAX_DEAD_SHARE = 0.3  # a segment with more removed rows than this is rewritten


_date_int = date_int


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
    coarse: "Coarse | None" = None  # the shared coarse quantizer of its IVF lists (None: flat, or an older own-list IVF)

    @property
    def size(self) -> int:
        return len(self.vec_ids)

    @classmethod
    def build(cls, vec_ids: np.ndarray, vectors, dates: list, issue_nos: list,
              postings: Postings, coarse: "Coarse | None" = None) -> "Segment":
        """A new segment; its vectors (float32 rows, or the store's `StoredVectors`) go into IVF lists
        of `coarse` when given, else a flat exact index."""
        table = sorted({n for n in issue_nos if n is not None})
        code = {n: i for i, n in enumerate(table)}
        index, nprobe = _vector_index(vectors, coarse)
        return cls(name=uuid.uuid4().hex[:16], vec_ids=np.asarray(vec_ids, dtype=np.int64),
                   dates=np.array([d if isinstance(d, (int, np.integer)) else _date_int(d) for d in dates],
                                  dtype=np.int32),
                   issues=np.array([code.get(n, -1) for n in issue_nos], dtype=np.int32),
                   issue_table=table, vectors=index, nprobe=nprobe, postings=postings, coarse=coarse)

    def save(self, base: Path) -> None:
        """Write the segment as `base/seg-<name>` (complete and fsynced before it is named)."""
        tmp = Path(tempfile.mkdtemp(prefix=".seg-tmp-", dir=base))
        np.save(tmp / "vec_ids.npy", self.vec_ids)
        np.save(tmp / "dates.npy", self.dates)
        np.save(tmp / "issues.npy", self.issues)
        (tmp / "meta.json").write_text(json.dumps({"issue_table": self.issue_table, "nprobe": self.nprobe,
                                                   "coarse": self.coarse and self.coarse.name}, ensure_ascii=False))
        _write_vectors(self.vectors, tmp / "vectors.faiss", shared=self.coarse is not None)
        self.postings.save(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, base / f"seg-{self.name}")

    @classmethod
    def load(cls, base: Path, name: str, vectors: bool = True,
             coarse_of: Callable[[str], "Coarse"] | None = None) -> "Segment":
        """A saved segment; arrays are memory-mapped (shared through the page cache), the vector
        index read whole unless `vectors` is False (a writer merging segments takes vectors from
        the store). `coarse_of` gives the shared coarse quantizer by name (Coarse.load)."""
        folder = base / f"seg-{name}"
        meta = json.loads((folder / "meta.json").read_text())
        coarse = meta.get("coarse")
        coarse = (coarse_of or (lambda c: Coarse.load(base, c)))(coarse) if coarse and vectors else None
        return cls(name=name, vec_ids=segment_ids(base, name), dates=_mapped(folder / "dates.npy"),
                   issues=_mapped(folder / "issues.npy"), issue_table=meta["issue_table"],
                   vectors=_read_vectors(folder / "vectors.faiss", coarse) if vectors else None,
                   nprobe=meta["nprobe"], postings=Postings.load(folder), coarse=coarse)

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

    def search_lists(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None,
                     assigned: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the best `k` rows among `allowed` in the lists the query was assigned
        to once for all segments (`Coarse.assign`): no centroid scan of its own."""
        _single_threaded()
        n_ok = self.size if allowed is None else int(allowed.sum())
        if n_ok == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        dis, lists = assigned
        bitmap = sel = None
        if allowed is not None and n_ok < self.size:
            bitmap = np.packbits(allowed, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        k = min(k, n_ok)
        scores, rows = np.empty((1, k), np.float32), np.empty((1, k), np.int64)
        q = np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32)
        self.vectors.search_preassigned_c(1, faiss.swig_ptr(q), k, faiss.swig_ptr(lists), faiss.swig_ptr(dis),
                                          faiss.swig_ptr(scores), faiss.swig_ptr(rows), False,
                                          faiss.SearchParametersIVF(sel=sel, nprobe=lists.shape[1]))
        del bitmap
        ok = rows[0] >= 0
        return rows[0][ok], scores[0][ok]

    def scores_of(self, qvec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Inner products of the query with the vectors of `rows`, as the index stores them
        (decoded row by row: no scan)."""
        if not len(rows):
            return np.zeros(0, np.float32)
        decoded = self.vectors.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))
        return decoded @ qvec.astype(np.float32).reshape(-1)


@dataclass
class Coarse:
    """The coarse quantizer shared by the IVF segments of an archive: k-means centroids, trained
    once (by the first segment of IVF_MIN_ROWS passages, or afresh at a rebuild), with the nprobe
    tuned on them. A query is assigned to its lists once (`assign`) and every segment scans just
    those lists, so a query costs the passages scanned, not a centroid scan per segment; new
    segments of any size go into the same lists. Saved as ``coarse-<name>/`` (centroids.npy, meta.json).

    Usage: ``coarse = Coarse.train(vectors); coarse.save(base); dis, lists = coarse.assign(q, coarse.nprobe)``"""

    name: str
    centroids: np.ndarray
    nprobe: int
    index: faiss.IndexFlatIP = field(init=False)

    def __post_init__(self) -> None:
        self.index = faiss.IndexFlatIP(self.centroids.shape[1])
        self.index.add(np.ascontiguousarray(self.centroids, dtype=np.float32))

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    @classmethod
    def train(cls, vectors: np.ndarray) -> "Coarse":
        """Centroids of `vectors` (spherical k-means, at most COARSE_LISTS lists, ROWS_PER_LIST rows
        each), and the smallest nprobe reaching TARGET_RECALL on them."""
        _single_threaded()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = max(1, min(COARSE_LISTS, len(vectors) // ROWS_PER_LIST))
        km = faiss.Kmeans(vectors.shape[1], nlist, niter=20, spherical=True, seed=1234,
                          min_points_per_centroid=1, max_points_per_centroid=64)
        km.train(vectors)
        coarse = cls(name=uuid.uuid4().hex[:16], centroids=km.centroids.copy(), nprobe=nlist)
        index, _ = _vector_index(vectors, coarse)
        coarse.nprobe = _tune_nprobe(index, vectors, nlist)
        return coarse

    def assign(self, qvec: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """(inner products, list numbers) of the query's `nprobe` nearest lists, shape (1, nprobe)."""
        _single_threaded()
        return self.index.search(np.ascontiguousarray(qvec.reshape(1, -1), dtype=np.float32),
                                 max(1, min(self.nlist, nprobe)))

    def save(self, base: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=".coarse-tmp-", dir=base))
        np.save(tmp / "centroids.npy", self.centroids)
        (tmp / "meta.json").write_text(json.dumps({"nprobe": self.nprobe}))
        _fsync_tree(tmp)
        os.rename(tmp, base / f"coarse-{self.name}")

    @classmethod
    def load(cls, base: Path, name: str) -> "Coarse":
        folder = base / f"coarse-{name}"
        meta = json.loads((folder / "meta.json").read_text())
        return cls(name=name, centroids=np.load(folder / "centroids.npy"), nprobe=meta["nprobe"])


def _write_vectors(index: faiss.Index, path: Path, shared: bool) -> None:
    """Write a vector index; an IVF on the shared coarse quantizer is written with an empty
    stand-in for it (the centroids live once, in ``coarse-<name>/``)."""
    if not shared:
        faiss.write_index(index, str(path))
        return
    real, stand_in = index.quantizer, faiss.IndexFlatIP(index.d)
    index.quantizer = stand_in
    try:
        faiss.write_index(index, str(path))
    finally:
        index.quantizer = real


def _read_vectors(path: Path, coarse: Coarse | None) -> faiss.Index:
    """A saved vector index; an IVF on a shared quantizer gets it back in place of its stand-in
    (the segment holds the `Coarse`, so it outlives the index), and every IVF its row → code map,
    so rows can be scored one by one."""
    index = faiss.read_index(str(path))
    if coarse is not None:
        stand_in = index.quantizer
        index.own_fields = False
        stand_in.this.acquire()  # freed by Python from now on
        index.quantizer = coarse.index
    if isinstance(index, faiss.IndexIVF) and index.direct_map.type == 0:
        index.make_direct_map(True)
    return index


_SINGLE_THREADED = False


def _mapped(path: Path) -> np.ndarray:
    """A saved array, memory-mapped (shared through the page cache) as a plain ndarray."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


def _trim() -> None:
    """Hand the heap a merge or flush freed back to the OS (glibc keeps it otherwise, so the next
    one's arrays would stack on a larger resident set). No-op without glibc."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _single_threaded() -> None:
    """One query's search gains nothing from OpenMP threads, and on a busy machine waiting for
    them costs ten times the search (measured: 24 ms → 1.5 ms per 16k-vector segment)."""
    global _SINGLE_THREADED
    if not _SINGLE_THREADED:
        faiss.omp_set_num_threads(1)
        _SINGLE_THREADED = True


def _found(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which of `ids` are in the ascending `sorted_ids`, where they are in it)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool), np.zeros(0, np.int64)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    hit = sorted_ids[at] == ids
    return hit, at[hit]


def segment_ids(base: Path, name: str) -> np.ndarray:
    """The vec_ids of a saved segment (memory-mapped)."""
    return np.load(base / f"seg-{name}" / "vec_ids.npy", mmap_mode="r").view(np.ndarray)


BUILD_CHUNK = 8192  # vectors coded at a time (a multiple of faiss's 4096-query blocks: the same assignment)


def _vector_index(vectors, coarse: Coarse | None = None) -> tuple[faiss.Index, int]:
    """8-bit scalar quantized inner-product index of `vectors` (float32 rows, or `StoredVectors`):
    flat (exact) without a coarse quantizer, else IVF lists of `coarse` with its nprobe. Returns
    (index, nprobe; 0 for flat). Trained and filled BUILD_CHUNK rows at a time: the codes are
    faiss's own `train` + `add` (min/max ranges of the rows, or of their residuals), without a
    float32 copy of all the rows."""
    n, dim = vectors.shape
    chunks = [(lo, min(lo + BUILD_CHUNK, n)) for lo in range(0, n, BUILD_CHUNK)]
    if coarse is None:
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        if n:
            _set_ranges(index, (np.ascontiguousarray(vectors[lo:hi], dtype=np.float32) for lo, hi in chunks))
            for lo, hi in chunks:
                index.add(np.ascontiguousarray(vectors[lo:hi], dtype=np.float32))
        return index, 0
    index = faiss.IndexIVFScalarQuantizer(coarse.index, dim, coarse.nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    # residuals to the list centroids are coded (tighter 8-bit ranges than the raw vectors); a score is
    # the query's inner product with the centroid (from `Coarse.assign`) plus that with the residual
    lists, centroids = np.empty(n, np.int64), np.asarray(coarse.centroids, np.float32)

    def residuals():
        for lo, hi in chunks:
            x = np.ascontiguousarray(vectors[lo:hi], dtype=np.float32)
            lists[lo:hi] = coarse.index.assign(x, 1).ravel()
            yield x - centroids[lists[lo:hi]]

    if n:
        _set_ranges(index, residuals())
        for lo, hi in chunks:
            x = np.ascontiguousarray(vectors[lo:hi], dtype=np.float32)
            index.add_core(hi - lo, faiss.swig_ptr(x), None, faiss.swig_ptr(lists[lo:hi]))
    index.make_direct_map(True)
    return index, coarse.nprobe


def _set_ranges(index: faiss.Index, rows) -> None:
    """Train an 8-bit scalar quantizer as faiss does (RS_minmax: each dimension's min and max over
    all rows) from rows given a chunk at a time."""
    lo = hi = None
    for x in rows:
        lo = x.min(axis=0) if lo is None else np.minimum(lo, x.min(axis=0))
        hi = x.max(axis=0) if hi is None else np.maximum(hi, x.max(axis=0))
    sq = index.sq
    assert sq.qtype == faiss.ScalarQuantizer.QT_8bit and sq.rangestat == faiss.ScalarQuantizer.RS_minmax \
        and sq.rangestat_arg == 0
    faiss.copy_array_to_vector(np.concatenate([lo, hi - lo]).astype(np.float32), sq.trained)
    index.is_trained = True


def _tune_nprobe(index: faiss.Index, vectors: np.ndarray, nlist: int, queries: int = 100) -> int:
    """The smallest nprobe whose recall@10 against an exact scan of the same codes reaches
    TARGET_RECALL, on queries between two random passages (harder than a passage itself)."""
    rng = np.random.default_rng(0)
    q = vectors[rng.integers(0, len(vectors), queries)] + vectors[rng.integers(0, len(vectors), queries)]
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    _, exact = index.search(q, 10, params=faiss.SearchParametersIVF(nprobe=nlist))
    nprobe = MIN_NPROBE
    while nprobe < nlist:
        _, got = index.search(q, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.tolist(), got.tolist())])
        if recall >= TARGET_RECALL:
            return nprobe
        nprobe *= 2
    return nlist


@dataclass
class Snapshot:
    """What retrieval needs, frozen at one generation of the archive (a `qa.search.SearchView`).
    Positions number the rows of all segments in order (removed rows included, never returned)."""

    generation: int
    segments: list[Segment]
    alive: list[np.ndarray | None]  # per segment: rows still in the store (None = all)
    lexical: LexicalIndex
    store: Store
    offsets: np.ndarray = field(init=False)
    vec_ids: np.ndarray = field(init=False)  # store id of each position
    _by_id: tuple | None = field(init=False, default=None)  # (positions, their vec_ids) sorted by vec_id

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
        `exact` scans every vector (for measuring the approximate index against). The query is
        assigned to coarse lists once for all segments sharing a quantizer; the fewer passages
        the filter allows, the more lists are probed, and a filter of at most EXACT_FILTER_ROWS
        passages is scored row by row."""
        allowed = [alive if mask is None else mask[self.offsets[i]:self.offsets[i + 1]]
                   for i, alive in enumerate(self.alive)]
        n_ok = self.size if mask is None else int(mask.sum())
        if n_ok == 0 or k <= 0:
            return {}
        if mask is not None and n_ok <= EXACT_FILTER_ROWS:
            return self._dense_rows(qvec, k, mask)
        share = n_ok / max(self.size, 1)
        assigned: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        found: list[tuple[float, int]] = []
        for i, seg in enumerate(self.segments):
            if seg.coarse is None:
                rows, scores = seg.search(qvec, k, allowed[i], exact)
            else:
                c = seg.coarse
                if c.name not in assigned:
                    assigned[c.name] = c.assign(qvec, c.nlist if exact else math.ceil(c.nprobe / share))
                rows, scores = seg.search_lists(qvec, k, allowed[i], assigned[c.name])
            found.extend(zip(scores.tolist(), (rows + self.offsets[i]).tolist()))
        found.sort(key=lambda x: -x[0])
        return {pos: score for score, pos in found[:k]}

    def _dense_rows(self, qvec: np.ndarray, k: int, mask: np.ndarray) -> dict[int, float]:
        """The best `k` positions of a narrow mask, every one of them scored (no scan)."""
        positions = np.flatnonzero(mask)
        scores = self.dense_scores(qvec, positions.tolist())
        top = np.argsort(-scores, kind="stable")[:k]
        return {int(positions[j]): float(scores[j]) for j in top}

    def dense_scores(self, qvec: np.ndarray, positions: list[int]) -> np.ndarray:
        """Exact inner products of the query with the vectors at `positions` (as the index stores
        them), decoded row by row in each segment."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), np.float32)
        seg_of = np.searchsorted(self.offsets, positions, side="right") - 1
        for i in np.unique(seg_of).tolist():
            at = np.flatnonzero(seg_of == i)
            out[at] = self.segments[i].scores_of(qvec, positions[at] - self.offsets[i])
        return out

    # -- the qa.search.SearchView seam: vec_ids outside, positions inside -------------------
    def where(self, date_from: str | None, date_to: str | None, issue: str | None) -> np.ndarray | None:
        """The filter as a mask over positions; None when nothing restricts."""
        if not (date_from or date_to or issue):
            return None
        return self.filter_mask(date_from, date_to, issue)

    def any_match(self, flt: np.ndarray | None) -> bool:
        return self.size > 0 if flt is None else bool(flt.any())

    def dense_top(self, qvec: np.ndarray, k: int, flt: np.ndarray | None = None) -> dict[int, float]:
        """The 8-bit codes choose max(k, RERANK) candidates; the store's vectors (what exact
        search reads) score and order them, so near ties the codes blur come out right."""
        found = self.dense(qvec, max(k, RERANK), flt)
        ids = self.vec_ids[list(found)] if found else np.zeros(0, np.int64)
        scores = self._stored_scores(qvec, ids)
        if scores is None:
            scores = np.array(list(found.values()), np.float32)
        top = np.argsort(-scores, kind="stable")[:k]
        return {int(ids[j]): float(scores[j]) for j in top}

    def dense_of(self, qvec: np.ndarray, vec_ids: list[int]) -> np.ndarray:
        """Scores as `dense_top` gives them: from the store's vectors (the index's codes for a
        passage the store no longer holds)."""
        stored = self._stored_scores(qvec, np.asarray(vec_ids, dtype=np.int64))
        if stored is not None:
            return stored
        pos = self.positions(vec_ids)
        out = np.zeros(len(pos), np.float32)
        ok = pos >= 0
        if ok.any():
            out[ok] = self.dense_scores(qvec, pos[ok].tolist())
        return out

    def _stored_scores(self, qvec: np.ndarray, vec_ids: np.ndarray) -> np.ndarray | None:
        """Inner products with the store's vectors; None when one of them has left the store."""
        if not len(vec_ids):
            return np.zeros(0, np.float32)
        try:
            return self.store.vectors(vec_ids) @ qvec.astype(np.float32).reshape(-1)
        except KeyError:
            return None

    def lexical_search(self, tokens: list[str], flt: np.ndarray | None = None) -> "_Bm25Hits":
        return _Bm25Hits(self, self.lexical.scores(tokens, flt))

    def idf(self, token: str) -> float:
        return self.lexical.idf(token)

    def holds(self, vec_id: int, tokens: set[str]) -> set[str]:
        """Which of `tokens` the passage contains: a look-up in its segment's postings."""
        pos = int(self.positions([vec_id])[0])
        if pos < 0 or not tokens:
            return set()
        i = int(np.searchsorted(self.offsets, pos, side="right") - 1)
        row, post = pos - int(self.offsets[i]), self.segments[i].postings
        ids = self.lexical.term_ids(list(tokens))
        held = set()
        for t, term_id in ids.items():
            rows, _ = post.docs_of(term_id)
            j = int(np.searchsorted(rows, rows.dtype.type(row)))  # no cast of the postings
            if j < len(rows) and rows[j] == row:
                held.add(t)
        return held

    def positions(self, vec_ids: list[int]) -> np.ndarray:
        """The live positions of `vec_ids` (-1 for one this snapshot lacks); the sorted lookup is
        built once per snapshot."""
        if self._by_id is None:
            live = np.flatnonzero(self.live_mask())
            order = live[np.argsort(self.vec_ids[live], kind="stable")]
            self._by_id = (order, self.vec_ids[order])
        order, sorted_ids = self._by_id
        want = np.asarray(vec_ids, dtype=np.int64)
        if not len(sorted_ids):
            return np.full(len(want), -1, np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, want), len(sorted_ids) - 1)
        return np.where(sorted_ids[at] == want, order[at], -1)

class _Bm25Hits:
    """BM25 scores of every position for one query (zeros outside the filter), read by vec_id."""

    def __init__(self, snap: Snapshot, scores: np.ndarray):
        self.snap, self.scores = snap, scores
        self._matched: np.ndarray | None = None

    def matched(self) -> np.ndarray:
        """Positions scoring above 0, ascending (found once per query)."""
        if self._matched is None:
            self._matched = np.flatnonzero(self.scores > 0)
        return self._matched

    def top(self, k: int) -> dict[int, float]:
        matched = self.matched()
        if len(matched) > k:
            matched = matched[np.argpartition(-self.scores[matched], k - 1)[:k]]
        return dict(zip(self.snap.vec_ids[matched].tolist(), self.scores[matched].tolist()))

    def best(self) -> int | None:
        matched = self.matched()
        if not len(matched):
            return None
        return int(self.snap.vec_ids[matched[int(np.argmax(self.scores[matched]))]])

    def scores_of(self, vec_ids: list[int]) -> np.ndarray:
        pos = self.snap.positions(vec_ids)
        return np.where(pos >= 0, self.scores[np.maximum(pos, 0)], 0.0) if len(pos) else np.zeros(0)


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




def _tier_group(names: list[str], counts: dict[str, int]) -> list[str] | None:
    """The first MERGE_AT (or more) segments of one size tier (live rows within a factor of 4)
    whose merge fits in one segment (MAX_SEGMENT_ROWS), in order; None when no tier has them."""
    tiers: dict[int, list[str]] = {}
    for n in names:
        tiers.setdefault(int(math.log(max(counts[n], 1), 4)), []).append(n)
    for members in tiers.values():
        fitting: list[str] = []
        for n in members:
            if sum(counts[m] for m in fitting) + counts[n] <= MAX_SEGMENT_ROWS:
                fitting.append(n)
        if len(fitting) >= MERGE_AT:
            return fitting
    return None


class FaissIndex:
    """The segments under `directory/derived`, derived from `store` (see the module doc); the
    `qa.search.SearchIndex` of the embedded default. `recover` (set by the archive) brings lagging
    files up to the store under the writer lock, or returns None when a writer is busy."""

    def __init__(self, directory: Path, store):
        self.directory = Path(directory)
        self.store = store
        self.base = self.directory / DERIVED
        self.recover: Callable[[], int | None] = lambda: None
        self._snapshot: Snapshot | None = None
        self._snap_lock = threading.Lock()
        self._segments: dict[str, Segment] = {}  # loaded segments, shared by snapshots
        self._buffer = _Buffer()
        self._unpublished: list[str] = []  # segments written by this writer, not yet published
        self._coarses: dict[str, Coarse] = {}  # loaded coarse quantizers, by name
        self._coarse: Coarse | None | bool = False  # the writer's quantizer for new segments (False: not looked up)

    # -- writing ----------------------------------------------------------------------------
    def stage(self, tx, rows: IndexRows, source: str):
        """Term ids of the page's tokens, inside the store transaction that writes it."""
        if not len(rows):
            return None
        # the store answers terms it has seen from its writer-session cache
        return rows, self.store.term_ids(tx, set(chain.from_iterable(rows.tokens)))

    def commit(self, staged) -> None:
        """Buffer a committed page; a new segment is flushed every FLUSH_ROWS passages."""
        if staged is None:
            return
        rows, ids = staged
        self.base.mkdir(exist_ok=True)
        buf = self._buffer
        buf.vec_ids.append(np.asarray(rows.vec_ids, dtype=np.int64))
        buf.vectors.append(rows.vectors)
        # one np.fromiter per passage cost the writer more than the ids' lookup itself
        lengths = [len(toks) for toks in rows.tokens]
        flat = np.fromiter(map(ids.__getitem__, chain.from_iterable(rows.tokens)), np.int32, sum(lengths))
        buf.docs.extend(np.split(flat, np.cumsum(lengths[:-1])))
        buf.dates.extend(rows.dates)
        buf.issue_nos.extend(rows.issue_nos)
        if buf.rows >= FLUSH_ROWS:
            self._flush()
            self._merge_unpublished()

    def removed(self, source_or_id: str) -> None:
        """Nothing to do: the next refresh tombstones what left the store."""

    def cleared(self) -> None:
        """The store's terms are gone; the next refresh finds every segment dead and trains a new quantizer."""
        self._coarse = None

    def reset(self) -> None:
        # What was buffered or flushed but not published is the store's to recover from now.
        self._buffer, self._unpublished = _Buffer(), []
        self._coarse = False

    def _flush(self) -> None:
        buf = self._buffer
        self._buffer = _Buffer()
        if buf.rows:
            self._unpublished.append(self._save_buffer(buf))
            del buf
            _trim()

    def _coarse_for(self, vectors: np.ndarray) -> Coarse | None:
        """The quantizer new segments go into: the one the published segments use (the newest),
        else one trained on `vectors` when they are IVF_MIN_ROWS or more, else None (flat)."""
        if self._coarse is False:
            self._coarse = None
            for name in reversed(self._published_names() or []):
                meta = json.loads((self.base / f"seg-{name}" / "meta.json").read_text())
                if meta.get("coarse"):
                    self._coarse = self._coarse_named(meta["coarse"])
                    break
        if self._coarse is None and len(vectors) >= IVF_MIN_ROWS:
            self._coarse = Coarse.train(vectors)
            self._coarse.save(self.base)
            self._coarses[self._coarse.name] = self._coarse
        return self._coarse

    def _coarse_named(self, name: str) -> Coarse:
        if name not in self._coarses:
            self._coarses[name] = Coarse.load(self.base, name)
        return self._coarses[name]

    def derived_generation(self) -> int | None:
        try:
            name = (self.base / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return int(name.removeprefix("gen-"))

    def is_current(self) -> bool:
        return self.derived_generation() == self.store.generation()

    def refresh(self, rebuild: bool = False) -> int:
        """Bring the search files up to the store: previous segments + new ones + tombstones, then
        merges (or, with `rebuild` or when no usable generation exists, all segments afresh from
        the store, never re-embedding). Call under the archive's writer lock (a rebuild after bumping
        the store's generation, so running servers switch to the rebuilt files). Returns the generation now current."""
        gen = self.store.generation()
        self.base.mkdir(exist_ok=True)
        names = None if rebuild else self._published_names()
        if names is not None and self.derived_generation() == gen and not self._buffer.rows:
            return gen
        if rebuild:
            self._coarse = None  # a quantizer trained afresh on the archive as it is now
        self._flush()
        names = (names or []) + self._unpublished
        live = self.store.vec_ids()  # ascending
        covered = np.zeros(len(live), bool)
        alive = {}
        for n in names:  # one segment's ids at a time: 9 bytes a passage in all, no sort of the archive
            alive[n], at = _found(live, segment_ids(self.base, n))
            covered[at] = True
        for n in self._segments_from_store(live[~covered]):
            names.append(n)
            alive[n] = np.ones(len(segment_ids(self.base, n)), bool)
        names = self._compact(names, alive)
        self._publish(gen, names, {n: ~alive[n] for n in names if not alive[n].all()})
        self._unpublished = []
        return gen

    def _segment(self, name: str) -> Segment:
        seg = self._segments.get(name)
        if seg is None:
            seg = self._segments[name] = Segment.load(self.base, name, coarse_of=self._coarse_named)
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
            terms = {t for toks in tokens for t in toks}
            with self.store.transaction() as tx:
                ids = self.store.term_ids(tx, terms)
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
        vectors = np.concatenate(buf.vectors)
        seg = Segment.build(np.concatenate(buf.vec_ids), vectors, buf.dates, buf.issue_nos,
                            Postings.from_docs(buf.docs), self._coarse_for(vectors))
        seg.save(self.base)
        return seg.name

    def _compact(self, names: list[str], alive: dict[str, np.ndarray], rewrite: bool = True) -> list[str]:
        """Drop empty segments, rewrite mostly dead ones and those off the shared quantizer (unless
        not `rewrite`), merge MERGE_AT segments of one size tier (`_tier_group`). Each merge holds
        one output segment's rows (at most MAX_SEGMENT_ROWS), whatever the number of segments."""
        names = [n for n in names if alive[n].any()]
        unshared = self._unshared(names) if rewrite else set()
        while True:
            counts = {n: int(alive[n].sum()) for n in names}
            group = next(([n] for n in names if rewrite and (counts[n] < (1 - MAX_DEAD_SHARE) * len(alive[n])
                                                             or n in unshared)), None) or _tier_group(names, counts)
            if group is None:
                return names
            merged = self._merge(group, alive)
            alive[merged] = np.ones(sum(counts[n] for n in group), bool)
            at = names.index(group[0])
            names = [n for n in names[:at] if n not in group] + [merged] + [n for n in names[at:] if n not in group]

    def _merge_unpublished(self) -> None:
        """During a long write: merge the unpublished segments as soon as MERGE_AT of one size tier
        are written (`_compact` without rewrites), and delete the merged ones (no reader knows
        them), so the final `refresh` is left at most one tier's merges and the disk holds no pile
        of small segments, however many pages one ingest writes."""
        sizes = {n: len(segment_ids(self.base, n)) for n in self._unpublished}
        if _tier_group(self._unpublished, sizes) is None:
            return  # (sizes bound the live rows; the archive's ids are read only when a tier is full)
        live = self.store.vec_ids()  # rows replaced or removed since they were flushed are left out
        alive = {n: _found(live, segment_ids(self.base, n))[0] for n in self._unpublished}
        before = self._unpublished
        self._unpublished = self._compact(before, alive, rewrite=False)
        for gone in set(before) - set(self._unpublished):
            shutil.rmtree(self.base / f"seg-{gone}", ignore_errors=True)

    def _unshared(self, names: list[str]) -> set[str]:
        """Segments not on the archive's shared quantizer (flat ones written before it was trained,
        or an older format's own lists) while it has one: each is rewritten onto it once, so a
        query probes a few of its lists instead of scanning it whole."""
        if self._coarse_for(np.zeros((0, 1), np.float32)) is None:
            return set()
        return {n for n in names
                if not json.loads((self.base / f"seg-{n}" / "meta.json").read_text()).get("coarse")}

    def _merge(self, group: list[str], alive: dict[str, np.ndarray]) -> str:
        segs = [Segment.load(self.base, n, vectors=False) for n in group]
        keep = [alive[n] for n in group]
        vec_ids = np.concatenate([s.vec_ids[k] for s, k in zip(segs, keep)])
        issue_nos = [n for s, k in zip(segs, keep) for n, kk in zip(s.issue_strings(), k.tolist()) if kk]
        postings = Postings.merge([(s.postings, k) for s, k in zip(segs, keep)])
        vectors = self.store.stored_vectors(vec_ids)  # int8: a quarter of float32's memory
        seg = Segment.build(vec_ids, vectors, np.concatenate([s.dates[k] for s, k in zip(segs, keep)]).tolist(),
                            issue_nos, postings, self._coarse_for(vectors))
        seg.save(self.base)
        name = seg.name
        del segs, postings, vectors, seg
        _trim()
        return name

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
        self._remove_unused("seg-", used, self._segments)
        self._prune_coarse(used)
        for tmp in [*self.base.glob(".gen-tmp-*"), *self.base.glob(".seg-tmp-*"), *self.base.glob(".coarse-tmp-*")]:
            shutil.rmtree(tmp, ignore_errors=True)

    def _prune_coarse(self, used_segments: set[str]) -> None:
        """Remove quantizers no kept segment (nor this writer) uses."""
        used = {self._coarse.name} if isinstance(self._coarse, Coarse) else set()
        for name in used_segments:
            try:
                used.add(json.loads((self.base / f"seg-{name}" / "meta.json").read_text()).get("coarse"))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        self._remove_unused("coarse-", used, self._coarses)

    def _remove_unused(self, prefix: str, used: set[str], loaded: dict) -> None:
        """Delete the `prefix`NAME folders whose NAME is not in `used`, and forget them in `loaded`."""
        for folder in self.base.glob(f"{prefix}*"):
            name = folder.name.removeprefix(prefix)
            if name not in used:
                shutil.rmtree(folder, ignore_errors=True)
                loaded.pop(name, None)

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> "Snapshot":
        """The newest complete snapshot; swapped atomically when a completed ingest lands.

        If the search files lag behind the store and no one is writing (a crash left them
        behind), they are brought up to date here first (`recover`)."""
        derived = self.derived_generation()
        snap = self._snapshot
        if snap is not None and snap.generation == derived == self.store.generation():
            return snap
        if derived != self.store.generation() or self._published_names() is None:
            recovered = self.recover()
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
