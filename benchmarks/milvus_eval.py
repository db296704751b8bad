"""Retrieval quality and query latency of the Milvus search index against the embedded (FAISS)
one, on the same store: an existing index folder is copied, its Milvus collection built from the
store (no re-embedding, as `qa reindex` does), and eval/dev.jsonl run on each.

Both BM25 variants of qa/search_milvus.py are measured: ``tokens`` (client-side BM25 over
qa.lexical's tokens) and ``jieba`` (Milvus's BM25 function over its jieba analyzer with the
local-names dictionary).

Usage::

    qa ingest seeds --index /tmp/seed-index          # once (FAISS, the default)
    python benchmarks/milvus_eval.py /tmp/seed-index [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _archive(directory: Path, backend: str, lexical: str | None = None):
    from qa.config import get_settings

    os.environ["QA_SEARCH_BACKEND"] = backend
    get_settings.cache_clear()
    import qa.search_milvus as sm

    if lexical:
        sm.LEXICAL = lexical
    from qa.index import Archive

    archive = Archive(directory)
    if backend == "milvus":
        t = time.perf_counter()
        with archive.writer():
            archive.refresh_derived(rebuild=True)
        print(f"milvus/{lexical}: collection built from the store in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return archive


def measure(archive, embedder, questions, rounds: int = 2) -> dict:
    """recall@1/5, MRR@10 on the questions, and p50/p95 of a search (model time included)."""
    from qa.evaluate import evaluate_retrieval
    from qa.retrieve import HybridRetriever

    retriever = HybridRetriever(archive, embedder)
    report = evaluate_retrieval(questions, retriever, top_k=5)
    times = []
    for q in questions * rounds:
        t = time.perf_counter()
        retriever.search(q.question, top_k=5)
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    lat = {"search_p50_ms": round(statistics.median(times), 1),
           "search_p95_ms": round(times[int(0.95 * (len(times) - 1))], 1)} if times else {}
    return {**report["overall"], **lat, "not_first": report["not_first"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path, help="an index folder built with the default (faiss) backend")
    parser.add_argument("--questions", type=Path, default=ROOT / "eval" / "dev.jsonl")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the questions timed (0: none)")
    args = parser.parse_args(argv)
    from qa.embed import load_embedder
    from qa.evaluate import load_questions

    questions = load_questions(args.questions)
    embedder = load_embedder()
    out = {"faiss": measure(_archive(args.index, "faiss"), embedder, questions, args.rounds)}
    with tempfile.TemporaryDirectory() as tmp:
        for lexical in ("tokens", "jieba"):
            copy = Path(tmp) / lexical
            shutil.copytree(args.index, copy)
            out[f"milvus-lite/{lexical}"] = measure(_archive(copy, "milvus", lexical), embedder, questions,
                                                        args.rounds)
    text = json.dumps(out, ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
