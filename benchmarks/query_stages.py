"""Where one in-process search spends its time: wall and CPU (this thread's, `time.thread_time`)
per question of each retrieval stage, with the real question embedding, over an existing index
(e.g. the one `scale_index.py --passages 1000000` builds). Stages nest (`snap.dense` is inside
`snap.dense_top`); "TOTAL" is the whole `HybridRetriever.search`. The embedding runs on the model's
own threads, so its CPU is not in this thread's figures: see scale_index.py's "query_embedding".
Prints one JSON.

    python benchmarks/query_stages.py --index /tmp/qa-scale/index
    python benchmarks/query_stages.py --index /tmp/qa-scale/index --from 1991-01-01 --to 1991-12-31
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import qa.retrieve as retrieve  # noqa: E402
import qa.search_faiss as search_faiss  # noqa: E402
from qa.embed import load_embedder  # noqa: E402
from qa.index import Archive  # noqa: E402
from scale_index import QUESTIONS  # noqa: E402

STAGES = [(search_faiss.Snapshot, ("dense_top", "dense", "_stored_scores", "dense_of", "lexical_search", "where")),
          (search_faiss._Bm25Hits, ("top", "scores_of")), (search_faiss.FaissIndex, ("snapshot",)),
          (retrieve.HybridRetriever, ("search", "_hits")), (retrieve, ("understand", "tokenize", "dense_weight"))]


class Timers:
    """Wraps functions so each call adds its wall and thread CPU time to a named total."""

    def __init__(self):
        self.totals = collections.defaultdict(lambda: [0.0, 0.0, 0])

    def wrap(self, owner, name: str, label: str) -> None:
        real, totals = getattr(owner, name), self.totals

        def timed(*args, **kw):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return real(*args, **kw)
            finally:
                entry = totals[label]
                entry[0] += time.perf_counter() - t0
                entry[1] += time.thread_time() - c0
                entry[2] += 1

        setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--from", dest="date_from")
    ap.add_argument("--to", dest="date_to")
    args = ap.parse_args()
    timers = Timers()
    for owner, names in STAGES:
        for name in names:
            timers.wrap(owner, name, "TOTAL" if name == "search" else f"{getattr(owner, '__name__', owner)}.{name}")
    embedder = load_embedder()
    retriever = retrieve.HybridRetriever(Archive(args.index), embedder)
    search = lambda q: retriever.search(q, 5, date_from=args.date_from, date_to=args.date_to)  # noqa: E731
    for q in QUESTIONS:
        search(q)  # warm: snapshot loaded, caches filled
    timers.totals.clear()
    for _ in range(args.rounds):
        for q in QUESTIONS:
            search(q)
    n = timers.totals["TOTAL"][2]
    out = {"index": str(args.index), "questions": n, "filter": [args.date_from, args.date_to],
           "ms_per_question": {k: {"wall": round(1000 * w / n, 2), "thread_cpu": round(1000 * c / n, 2),
                                   "calls": round(m / n, 1)}
                               for k, (w, c, m) in sorted(timers.totals.items(), key=lambda x: -x[1][1])}}
    print(json.dumps(out, ensure_ascii=False, indent=1), flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # FAISS's exit-time SWIG messages: not on stdout


if __name__ == "__main__":
    main()
