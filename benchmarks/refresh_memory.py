"""Peak RSS of the search-file refresh that ends a large ingest, without ingesting again.

A long ingest flushes a FAISS segment every `FLUSH_ROWS` passages (flat, unpublished) and merges
them at its end (`FaissIndex.refresh`). This reproduces that end from an index built before
(e.g. by `ingest_memory.py --pages 10000 --work DIR`): `prepare` splits its published segments back
into the flat FLUSH_ROWS-row segments the ingest wrote (postings and vectors from the segments and
the store, no jieba, no model) and forgets every generation; `run` then does what the ingest's last
step does, in a fresh process (with `--model`, the ingest model loaded first, so the figures
compare with a whole ingest's), and prints one JSON: RSS before, peak during, the same per stage.

    python benchmarks/refresh_memory.py prepare --index /tmp/x/index --out /tmp/x/prepared
    python benchmarks/refresh_memory.py run --prepared /tmp/x/prepared [--model]

`run` copies the prepared folder each time (the refresh writes into it), so it can be repeated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qa.search_faiss as sf  # noqa: E402
from bench_scale import status_mb  # noqa: E402
from qa.index import Archive  # noqa: E402
from qa.lexical import Postings  # noqa: E402


def prepare(index_dir: Path, out: Path) -> dict:
    """`out`/index: the store of `index_dir` (copied) and the unpublished flat segments an ingest
    of it would have flushed (names in `out`/unpublished.json)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "index" / sf.DERIVED).mkdir(parents=True)
    shutil.copy2(index_dir / "archive.sqlite3", out / "index" / "archive.sqlite3")
    src = Archive(index_dir).search
    segs = [sf.Segment.load(src.base, n, vectors=False) for n in src._published_names()]
    archive = Archive(out / "index")
    index, names = archive.search, []
    index._coarse = None  # as at the start of an ingest into an empty index
    index.base.mkdir(exist_ok=True)
    offsets = np.cumsum([0] + [s.size for s in segs])
    for lo in range(0, int(offsets[-1]), sf.FLUSH_ROWS):
        hi = min(lo + sf.FLUSH_ROWS, int(offsets[-1]))
        parts, ids, dates, issues = [], [], [], []
        for s, o in zip(segs, offsets[:-1].tolist()):
            keep = np.zeros(s.size, bool)
            keep[max(lo - o, 0):max(min(hi - o, s.size), 0)] = True
            if keep.any():
                parts.append((s.postings, keep))
                ids.append(s.vec_ids[keep])
                dates += s.dates[keep].tolist()
                issues += [n for n, k in zip(s.issue_strings(), keep.tolist()) if k]
        vec_ids = np.concatenate(ids)
        seg = sf.Segment.build(vec_ids, archive.store.vectors(vec_ids), dates, issues, Postings.merge(parts), None)
        seg.save(index.base)
        names.append(seg.name)
    (out / "unpublished.json").write_text(json.dumps(names))
    return {"prepared": str(out), "segments": len(names), "rows": int(offsets[-1])}


class Stages:
    """Max RSS sampled while each wrapped function runs (stage name → MB), by a sampling thread."""

    def __init__(self, every: float = 0.01):
        self.peaks: dict[str, float] = {}
        self.active: list[str] = []
        self.calls: dict[str, int] = {}
        self.each: dict[str, list[float]] = {}  # stage → peak RSS of each call
        self._stop = threading.Event()
        threading.Thread(target=self._sample, args=(every,), daemon=True).start()

    def _sample(self, every: float) -> None:
        while not self._stop.wait(every):
            rss = status_mb("VmRSS")
            for name in list(self.active):
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss)
                self.each[name][-1] = max(self.each[name][-1], rss)

    def wrap(self, owner, attr: str, name: str) -> None:
        real = getattr(owner, attr)

        def wrapped(*a, **kw):
            self.each.setdefault(name, []).append(status_mb("VmRSS"))
            self.active.append(name)
            self.calls[name] = self.calls.get(name, 0) + 1
            try:
                return real(*a, **kw)
            finally:
                self.active.remove(name)
                self.peaks[name] = max(self.peaks.get(name, 0.0), status_mb("VmRSS"))
                self.each[name][-1] = max(self.each[name][-1], status_mb("VmRSS"))

        setattr(owner, attr, staticmethod(wrapped) if isinstance(owner.__dict__.get(attr), staticmethod)
                else classmethod(lambda cls, *a, **kw: wrapped(*a, **kw)) if isinstance(owner.__dict__.get(attr), classmethod)
                else wrapped)

    def stop(self) -> None:
        self._stop.set()


def run(prepared: Path, model: bool) -> dict:
    """The ingest's final refresh over the prepared segments, in this process; its RSS figures."""
    work = prepared.parent / (prepared.name + "-run")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(prepared, work)
    kept = None
    if model:
        from qa import embed

        kept = embed.load_ingest_embedder()  # noqa: F841 (held: its memory counts, as in an ingest)
    archive = Archive(work / "index")
    stages = Stages()
    stages.wrap(sf.FaissIndex, "_merge", "merge")
    stages.wrap(sf.Coarse, "train", "coarse_train")
    stages.wrap(Postings, "merge", "postings_merge")
    stages.wrap(archive.store, "vectors", "store_vectors")
    stages.wrap(sf, "_vector_index", "vector_index")
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here on
    c0, t0 = time.process_time(), time.perf_counter()
    with archive.writer():
        archive.search._unpublished = json.loads((work / "unpublished.json").read_text())
        archive.refresh_derived()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    stages.stop()
    rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
    out = {"rows": archive.snapshot().size, "segments_in": len(json.loads((work / "unpublished.json").read_text())),
           "segments_out": len(archive.search._published_names()), "model_loaded": model,
           "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1), "rss_after_mb": round(rss, 1),
           "refresh_peak_over_before_mb": round(peak - before, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "stage_peak_rss_mb": {k: round(v, 1) for k, v in stages.peaks.items()}, "stage_calls": stages.calls,
           "merge_peaks_mb": [round(v) for v in stages.each.get("merge", [])]}
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--prepared", type=Path, required=True)
    r.add_argument("--model", action="store_true", help="load the ingest model first (kept, as an ingest holds it)")
    args = ap.parse_args()
    out = prepare(args.index, args.out) if args.cmd == "prepare" else run(args.prepared, args.model)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
