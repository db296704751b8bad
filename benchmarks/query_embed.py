"""Request-time embedding cost, by backend and thread count: CPU ms and wall ms per question, one
question per model call ("single") and all questions in one call ("batched"); per cold
`/api/ask`, whose answer sentences are embedded together ("sentences34": groups of 34 seed
sentences, about a top-5 passage set's); plus the minimum cosine of each backend's vectors to
torch fp32's on the dev questions and seed passages.

CPU time is the whole process's (every runtime thread), so it is the figure that stays
meaningful on a busy machine; compare backends by their ratio within one run.

    python benchmarks/query_embed.py                      # torch, onnx-fp32; 1 and 2 threads
    python benchmarks/query_embed.py --backends onnx-fp32,openvino-int8 --threads 2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def questions() -> list[str]:
    lines = (ROOT / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines()
    return ["query: " + json.loads(line)["question"] for line in lines if line.strip()]


def passages() -> list[str]:
    from qa.ingest import prepare_page
    from qa.parse import parse_page

    files = sorted((ROOT / "seeds").glob("*.txt"))
    return ["passage: " + t for f in files for t in prepare_page(f, parse_page(f, f.name)).texts]


def sentence_groups(ps: list[str], size: int = 34) -> list[list[str]]:
    """The seed passages' sentences in groups of `size`: what a cold `/api/ask` embeds at once."""
    from qa.chunk import split_sentences

    sentences = ["passage: " + s for p in ps for s in split_sentences(p.removeprefix("passage: ")) if len(s) > 8]
    return [sentences[i:i + size] for i in range(0, len(sentences) - size + 1, size)]


def timed(fn, repeat: int) -> tuple[float, float]:
    """(CPU s, wall s) of `repeat` calls of fn, best of the repeats by CPU."""
    best = None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        got = (time.process_time() - c, time.perf_counter() - w)
        best = got if best is None or got[0] < best[0] else best
    return best


def measure(encoder, qs: list[str], groups: list[list[str]], repeat: int) -> dict:
    encoder.encode(qs[:4], 32)  # warm-up: first-call allocations
    encoder.encode(groups[0], 32)
    single = timed(lambda: [encoder.encode([q], 32) for q in qs], repeat)
    batched = timed(lambda: encoder.encode(qs, 64), repeat)
    sentences = timed(lambda: [encoder.encode(g, 32) for g in groups], repeat)
    n, g = len(qs), len(groups)
    return {"single_cpu_ms": round(1000 * single[0] / n, 2), "single_wall_ms": round(1000 * single[1] / n, 2),
            "batched_cpu_ms": round(1000 * batched[0] / n, 2), "batched_wall_ms": round(1000 * batched[1] / n, 2),
            "sentences34_cpu_ms": round(1000 * sentences[0] / g), "sentences34_wall_ms": round(1000 * sentences[1] / g)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="torch,onnx-fp32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from qa.embed import DEFAULT_MODEL, make_encoder, resolve_model

    folder = resolve_model(DEFAULT_MODEL)
    qs, ps = questions(), passages()
    groups = sentence_groups(ps)
    reference = make_encoder(folder, "cpu", "torch", threads=0)
    ref_q, ref_p = reference.encode(qs, 32), reference.encode(ps, 32)
    out = {"questions": len(qs), "passages": len(ps), "sentence_groups": len(groups), "cores": os.cpu_count(), "runs": []}
    for backend in args.backends.split(","):
        for threads in [int(t) for t in args.threads.split(",")]:
            enc = make_encoder(folder, "cpu", backend, threads=threads)
            row = {"backend": enc.backend, "threads": threads, **measure(enc, qs, groups, args.repeat)}
            row["min_cos_questions"] = round(float((enc.encode(qs, 32) * ref_q).sum(1).min()), 6)
            row["min_cos_passages"] = round(float((enc.encode(ps, 32) * ref_p).sum(1).min()), 6)
            out["runs"].append(row)
            print(json.dumps(row), file=sys.stderr)
    print(json.dumps(out, indent=2))
    print(f"rerun: python benchmarks/query_embed.py --backends {args.backends} --threads {args.threads} "
          f"--repeat {args.repeat}")


if __name__ == "__main__":
    main()
