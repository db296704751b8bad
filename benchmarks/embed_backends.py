"""CPU cost and memory per passage of each embedding backend on the same real passages, in one
run, against plain sentence-transformers fp32 `encode` (batch 32, as `bench_scale.py`'s baseline):
the figures `ingest_backends` orders the `auto` choice by. Prints one JSON object.

    python benchmarks/embed_backends.py --texts 256                      # seeds + news pages
    python benchmarks/embed_backends.py --backends openvino-int8,onnx-int8 --threads 1,2

Each backend (and the plain encode) runs in a child process of its own, so that its resident
memory is its own: `rss_loaded_mb` after the model is loaded and has embedded two passages,
`peak_rss_mb` the child's peak (the one-time exports run in a grandchild and do not count). Both
include a second copy of the tokenizer (~270 MB: the passage tokenizer, which ingest runs in its
reader processes), the same for every backend.
Each backend embeds the same token ids (`embed_passage_ids`, as ingest does) after that warm-up
call; CPU time is the child's (all threads), so it holds on a busy machine where wall time does
not. `cos_min` is the lowest cosine of a passage's vector to the plain fp32 one; `cos_min_seeds`
the same over the seed passages among the texts.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import peak_rss_mb, status_mb  # noqa: E402


def sample_texts(n: int, pages: int = 8) -> tuple[list[str], list[bool]]:
    """`n` embedding texts of seeds + `pages` real-text news pages, as ingest makes them, and
    for each whether it comes from a seed page."""
    from bench_scale import SEEDS, embedding_texts
    from newspages import news_articles, write_pages

    files = write_pages(Path(tempfile.mkdtemp(prefix="embed-backends-")), news_articles(), pages)
    seeds = embedding_texts(sorted(SEEDS.glob("*.txt")))
    texts = [(t, True) for t in seeds] + [(t, False) for t in embedding_texts(files)]
    picked = random.Random(1).sample(texts, min(n, len(texts)))
    return [t for t, _ in picked], [s for _, s in picked]


def child(backend: str, threads: int, texts_file: Path, vectors_file: Path) -> dict:
    """Load `backend` ('plain': sentence-transformers fp32), embed the texts, save the vectors."""
    from qa.embed import DEFAULT_MODEL, Embedder, make_encoder, resolve_model

    texts, folder = json.loads(texts_file.read_text()), resolve_model(DEFAULT_MODEL)
    t0 = time.process_time()
    if backend == "plain":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        plain = SentenceTransformer(str(folder), device="cpu", local_files_only=True)

        def run(some):
            return plain.encode(some, prompt="passage: ", batch_size=32, normalize_embeddings=True)
        name, inputs = "plain-fp32-encode", texts
    else:
        emb = Embedder(make_encoder(folder, "cpu", backend, threads), DEFAULT_MODEL, folder)
        run, name, inputs = emb.embed_passage_ids, emb.backend, emb.passage_tokenizer()(texts)
    run(inputs[:2])
    row = {"backend": name, "threads": threads, "load_cpu_s": round(time.process_time() - t0, 1),
           "rss_loaded_mb": status_mb("VmRSS")}
    t0, c0 = time.perf_counter(), time.process_time()
    vectors = run(inputs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(vectors_file, np.asarray(vectors, np.float32))
    return row | {"cpu_ms_per_passage": round(1000 * cpu / len(texts), 1),
                  "wall_ms_per_passage": round(1000 * wall / len(texts), 1),
                  "peak_rss_mb": peak_rss_mb()}


def run_child(backend: str, threads: int, texts_file: Path, vectors_file: Path) -> dict:
    """`child` in a fresh interpreter; its row (raises with its stderr if it failed)."""
    done = subprocess.run([sys.executable, __file__, "--child", backend, "--threads", str(threads),
                           "--texts-file", str(texts_file), "--vectors-file", str(vectors_file)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--backends", default="openvino-int8,onnx-int8,openvino,onnx-fp32,torch")
    ap.add_argument("--threads", default="2", help="comma-separated thread counts per backend")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--vectors-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return print(json.dumps(child(args.child, int(args.threads), args.texts_file, args.vectors_file)))
    texts, is_seed = sample_texts(args.texts)
    work = Path(tempfile.mkdtemp(prefix="embed-backends-"))
    (work / "texts.json").write_text(json.dumps(texts, ensure_ascii=False))
    first = int(args.threads.split(",")[0])
    row = run_child("plain", first, work / "texts.json", work / "plain.npy")
    ref, seeds = np.load(work / "plain.npy"), np.asarray(is_seed)
    result = {"texts": len(texts), "seed_texts": int(seeds.sum()), "plain_fp32_encode": row, "backends": []}
    for backend in args.backends.split(","):
        for threads in map(int, args.threads.split(",")):
            row = run_child(backend, threads, work / "texts.json", work / f"{backend}-{threads}.npy")
            cos = (np.load(work / f"{backend}-{threads}.npy") * ref).sum(1)
            row |= {"cos_min": round(float(cos.min()), 5),
                    "cos_min_seeds": round(float(cos[seeds].min()), 5) if seeds.any() else None,
                    "cpu_ratio_vs_plain": round(result["plain_fp32_encode"]["cpu_ms_per_passage"]
                                                / row["cpu_ms_per_passage"], 3)}
            result["backends"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
