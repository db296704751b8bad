"""CPU cost per passage of each embedding backend on the same real passages, in one run, against
plain sentence-transformers fp32 `encode` (batch 32, as `bench_scale.py`'s baseline): the figures
`ingest_backends` orders the `auto` choice by. Prints one JSON object.

    python benchmarks/embed_backends.py --texts 128                      # seeds + news pages
    python benchmarks/embed_backends.py --backends openvino,onnx-int8 --threads 1,2

Each backend embeds the same token ids (`embed_passage_ids`, as ingest does) after one warm-up
call; CPU time is the process's (all threads), so it holds on a busy machine where wall time does
not. `cos_min` is the lowest cosine of a passage's vector to the plain fp32 one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def sample_texts(n: int, pages: int = 8) -> list[str]:
    """`n` embedding texts of seeds + `pages` real-text news pages, as ingest makes them."""
    from bench_scale import SEEDS, embedding_texts
    from newspages import news_articles, write_pages

    files = write_pages(Path(tempfile.mkdtemp(prefix="embed-backends-")), news_articles(), pages)
    texts = embedding_texts(sorted(SEEDS.glob("*.txt")) + files)
    return random.Random(1).sample(texts, min(n, len(texts)))


def measure(fn, n: int) -> tuple[object, dict]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, {"cpu_ms_per_passage": round(1000 * cpu / n, 1), "wall_ms_per_passage": round(1000 * wall / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--backends", default="openvino,onnx-int8,onnx-fp32,torch")
    ap.add_argument("--threads", default="2", help="comma-separated thread counts per backend")
    args = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    from qa.embed import DEFAULT_MODEL, Embedder, make_encoder, resolve_model

    texts, folder = sample_texts(args.texts), resolve_model(DEFAULT_MODEL)
    torch.set_num_threads(int(args.threads.split(",")[0]))
    plain = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    plain.encode(texts[:2], prompt="passage: ")
    ref, row = measure(lambda: plain.encode(texts, prompt="passage: ", batch_size=32, normalize_embeddings=True),
                       len(texts))
    result = {"texts": len(texts), "plain_fp32_encode": row, "backends": []}
    for backend in args.backends.split(","):
        for threads in map(int, args.threads.split(",")):
            t0 = time.process_time()
            emb = Embedder(make_encoder(folder, "cpu", backend, threads), DEFAULT_MODEL, folder)
            ids = emb.passage_tokenizer()(texts)
            emb.embed_passage_ids(ids[:2])
            load = time.process_time() - t0
            vectors, row = measure(lambda: emb.embed_passage_ids(ids), len(texts))
            row |= {"backend": emb.backend, "threads": threads, "load_cpu_s": round(load, 1),
                    "cos_min": round(float((vectors * ref).sum(1).min()), 5),
                    "cpu_ratio_vs_plain": round(result["plain_fp32_encode"]["cpu_ms_per_passage"] / row["cpu_ms_per_passage"], 3)}
            result["backends"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
