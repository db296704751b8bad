"""Store statements per question: how many SQL statements one `search` and one `ask` send to the
store (SQLite's trace callback), the first time a question is asked and again (per-snapshot
caches warm), over the questions of an eval file. Prints one JSON.

    python benchmarks/query_sql.py --index index                  # eval/dev.jsonl
    python benchmarks/query_sql.py --index /tmp/x/index --questions eval/fresh.jsonl --limit 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answer import Answerer  # noqa: E402
from qa.embed import load_embedder  # noqa: E402
from qa.index import Archive  # noqa: E402
from qa.retrieve import HybridRetriever  # noqa: E402


class Counter:
    """Counts the statements a SQLite connection runs (its trace callback)."""

    def __init__(self, conn):
        self.n = 0
        conn.set_trace_callback(self._seen)

    def _seen(self, _sql: str) -> None:
        self.n += 1

    def during(self, fn, *args) -> int:
        before = self.n
        fn(*args)
        return self.n - before


def per_question(counter: Counter, fn, questions: list[str]) -> dict:
    """Statements per call of `fn` over `questions`: first pass, then the same questions again."""
    first = [counter.during(fn, q) for q in questions]
    again = [counter.during(fn, q) for q in questions]
    return {"first_mean": round(sum(first) / len(first), 1), "first_max": max(first),
            "again_mean": round(sum(again) / len(again), 1), "again_max": max(again)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=Path("index"))
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "dev.jsonl")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    args = ap.parse_args()
    lines = [json.loads(x) for x in args.questions.read_text(encoding="utf-8").splitlines() if x.strip()]
    questions = [x["question"] for x in lines][: args.limit or None]
    embedder = load_embedder()
    out: dict = {"index": str(args.index), "questions": len(questions)}
    for what in ("search", "ask"):  # a fresh archive each: the second starts with cold caches too
        archive = Archive(args.index)
        retriever = HybridRetriever(archive, embedder)
        counter = Counter(archive.store.conn)
        fn = (lambda q: retriever.search(q, 5)) if what == "search" else Answerer(retriever).ask
        out[what] = per_question(counter, fn, questions)
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
