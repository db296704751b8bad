"""Store benchmark: seeds ingest time, `search` latency and the store's hot path (the lookups a
search makes: passages_by_vec_id, issue, article), for one or more code trees and stores, in one
run, alternating, so that ratios are fair on a busy machine.

Usage::

    # before/after a change to the store (the same machine, one run):
    git archive BASE | tar -x -C /tmp/base
    python benchmarks/bench_store.py --tree /tmp/base --tree . --rounds 2
    # SQLite vs PostgreSQL (a throwaway cluster, as the tests start one):
    python benchmarks/bench_store.py --tree . --postgres

Prints one JSON object: per variant, the median over rounds of each figure, and each variant's
ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, os, sys, time, tempfile
from pathlib import Path
from qa.ingest import ingest_paths
from qa.index import Archive
from qa.embed import load_embedder
from qa.retrieve import HybridRetriever

seeds, dev = Path(sys.argv[1]), Path(sys.argv[2])
index = Path(tempfile.mkdtemp()) / "index"
t = time.perf_counter()
ingest_paths([seeds], index, progress=False)
ingest_s = time.perf_counter() - t
questions = [json.loads(l)["question"] for l in dev.read_text(encoding="utf-8").splitlines() if l.strip()]
archive = Archive(index)
retriever = HybridRetriever(archive, load_embedder())
for q in questions[:3]:
    retriever.search(q, 5)
lat = []
for _ in range(2):
    for q in questions:
        t = time.perf_counter()
        retriever.search(q, 5)
        lat.append(time.perf_counter() - t)
store = archive.store
ids = store.vec_ids().tolist()
groups = [ids[k:k + 10] for k in range(0, len(ids), 10)]
t = time.perf_counter()
n = 0
for _ in range(20):
    for g in groups:
        rows = store.passages_by_vec_id(g)
        for p in rows.values():
            store.issue(p.issue_id)
            store.article(p.article_id)
        n += 1
hot_ms = (time.perf_counter() - t) / n * 1000
lat.sort()
print(json.dumps({"ingest_s": ingest_s, "search_p50_ms": lat[len(lat) // 2] * 1000,
                  "search_p95_ms": lat[int(len(lat) * 0.95)] * 1000, "hot_path_ms_per_10_hits": hot_ms}))
"""


def _measure(tree: Path, env_extra: dict[str, str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **env_extra}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT / "seeds"), str(ROOT / "eval" / "dev.jsonl")],
                         env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", type=Path, default=[], help="a code tree (repeatable)")
    ap.add_argument("--postgres", action="store_true", help="also the last tree on a throwaway PostgreSQL")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree] or [ROOT]
    variants = [(f"{t.name or t}:sqlite", t, {"QA_STORE_URL": ""}) for t in trees]
    cluster = None
    if args.postgres:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg_support import Cluster, pg_bindir

        cluster = Cluster(pg_bindir()).start()
    try:
        results: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
        if cluster:
            results[f"{trees[-1].name}:postgresql"] = []
        for r in range(args.rounds):
            runs = list(variants)
            if cluster:  # the last tree only: an older tree may not know PostgreSQL
                cluster.admin(f"CREATE DATABASE bench_{r}")
                runs.append((f"{trees[-1].name}:postgresql", trees[-1], {"QA_STORE_URL": cluster.url(f"bench_{r}")}))
            for name, tree, env in runs:
                results[name].append(_measure(tree, env))
                print(name, results[name][-1], file=sys.stderr)
    finally:
        if cluster:
            cluster.stop()
    medians = {name: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]} for name, rs in results.items()}
    first = next(iter(medians.values()))
    ratios = {name: {k: round(v / first[k], 3) for k, v in m.items()} for name, m in medians.items()}
    print(json.dumps({"medians": medians, "ratio_to_first": ratios, "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    main()
