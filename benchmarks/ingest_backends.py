"""End-to-end ingest per CPU embedding backend, in one run, against plain sentence-transformers fp32
`encode` of the same texts: `bench_scale.py`'s ingest figures without its queries and eval, once
per `QA_EMBED_BACKEND` value, so that backends compare on one machine state. Prints one JSON object.

    python benchmarks/ingest_backends.py --pages 20 --backends onnx-int8,openvino-int8

Each ingest runs `ingest_paths` on seeds/ + `--pages` real-text news pages into a fresh index, in
a child process (model load, parse, chunk, embed, store, index; its peak RSS); the plain encode
runs all the same embedding texts in another child. `ingest_vs_plain_encode_cpu` is the ratio of
CPU time per passage (ingest's model load and reader processes included, the plain model's load
not), the figure that holds on a busy machine; `ingest_vs_plain_encode` the same by wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import SEEDS, _encode_child, _ingest_child, embedding_texts, in_child, vs_plain  # noqa: E402
from newspages import news_articles, write_pages  # noqa: E402


def ingest_with(backend: str, paths: list[str], index_dir: Path) -> dict:
    """`_ingest_child` into a fresh `index_dir` with ``QA_EMBED_BACKEND=backend``."""
    shutil.rmtree(index_dir, ignore_errors=True)
    saved = os.environ.get("QA_EMBED_BACKEND")
    os.environ["QA_EMBED_BACKEND"] = backend
    try:
        return in_child(_ingest_child, paths, str(index_dir))
    finally:
        os.environ.pop("QA_EMBED_BACKEND") if saved is None else os.environ.__setitem__("QA_EMBED_BACKEND", saved)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=20, help="real-text pages besides the seeds (~50 passages each)")
    ap.add_argument("--backends", default="onnx-int8,openvino-int8")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="ingest-backends-"))
    try:
        files = write_pages(work / "pages", news_articles(), args.pages) if args.pages else []
        paths = [str(SEEDS)] + ([str(work / "pages")] if files else [])
        plain = in_child(_encode_child, embedding_texts(sorted(SEEDS.glob("*.txt")) + files))
        result = {"pages": args.pages + 5, "plain_fp32_encode": plain, "ingest": []}
        for backend in args.backends.split(","):
            row = ingest_with(backend, paths, work / "index")
            row = {"backend": backend, "passages": row["passages"], "seconds": round(row["seconds"], 1),
                   "cpu_seconds": round(row["cpu_seconds"], 1),
                   "cpu_ms_per_passage": round(1000 * row["cpu_seconds"] / row["passages"], 1),
                   "embed_share": round(row["embed_seconds"] / row["seconds"], 3), "peak_rss_mb": row["peak_rss_mb"],
                   **vs_plain(row, plain)}
            result["ingest"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        print(json.dumps(result, ensure_ascii=False, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
