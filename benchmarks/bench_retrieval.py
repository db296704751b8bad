"""Ingest throughput, query latency (in-process and over HTTP) and peak memory, on the seed
index and on a synthetic archive of --passages passages (default 100k).

The synthetic archive recombines real seed sentences into passages, and takes its vectors from
real embeddings of a sample plus noise (embedding 100k passages for real would take the
benchmark an hour on 2 cores; the per-passage embedding cost is measured on the seeds instead).

    python benchmarks/bench_retrieval.py                  # everything
    python benchmarks/bench_retrieval.py --passages 20000 --skip-http
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from qa.answer import Answerer  # noqa: E402
from qa.chunk import Passage, split_sentences  # noqa: E402
from qa.embed import load_embedder  # noqa: E402
from qa.evaluate import load_questions  # noqa: E402
from qa.index import Archive  # noqa: E402
from qa.ingest import ingest_paths  # noqa: E402
from qa.lexical import tokenize  # noqa: E402
from qa.parse import Article, Issue, Page, parse_page  # noqa: E402
from qa.retrieve import HybridRetriever  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 1)


def latency(fn, questions: list[str], rounds: int = 3) -> dict:
    times = []
    for _ in range(rounds):
        for q in questions:
            t0 = time.perf_counter()
            fn(q)
            times.append(time.perf_counter() - t0)
    return {"n": len(times), "p50_ms": pct(times, 50), "p95_ms": pct(times, 95),
            "mean_ms": round(1000 * statistics.fmean(times), 1)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_seeds(questions: list[str], http: bool) -> dict:
    t0 = time.perf_counter()
    embedder = load_embedder()
    load_s = time.perf_counter() - t0
    index = Path(tempfile.mkdtemp(prefix="qa-bench-")) / "index"
    report = ingest_paths([ROOT / "seeds"], index, progress=False)
    out = {
        "model_load_s": round(load_s, 2),
        "ingest": {"pages": report.pages, "passages": report.passages, "seconds": round(report.seconds, 2),
                   "pages_per_s": round(report.pages / report.seconds, 2),
                   "passages_per_s": round(report.passages / report.seconds, 1),
                   "embedding_share": round(report.embed_seconds / report.seconds, 3)},
    }
    retriever = HybridRetriever(Archive(index), embedder)
    answerer = Answerer(retriever)
    out["search_in_process"] = latency(lambda q: retriever.search(q, 5), questions)
    out["ask_in_process"] = latency(lambda q: answerer.ask(q), questions)
    if http:
        import httpx
        from conftest import LiveServer

        server = LiveServer(index, log_path=index.parent / "server.log").wait()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                out["search_http"] = latency(lambda q: c.post("/api/search", json={"query": q}).raise_for_status(),
                                             questions)
                out["ask_http"] = latency(lambda q: c.post("/api/ask", json={"question": q}).raise_for_status(),
                                          questions)
        finally:
            server.stop()
    return out


def synthetic_pages(n_passages: int, per_page: int, seed: int = 7):
    """Pages of recombined seed sentences, each with `per_page` passages of about 200 characters."""
    rng = random.Random(seed)
    sentences = []
    for f in sorted((ROOT / "seeds").glob("*.txt")):
        for a in parse_page(f).articles:
            for para in a.paragraphs:
                sentences.extend(s for s in split_sentences(para.text) if len(s) > 8)
    n_pages = (n_passages + per_page - 1) // per_page
    for k in range(n_pages):
        date = f"{2000 + k % 25:04d}-{1 + k % 12:02d}-{1 + k % 28:02d}"
        texts = []
        for _ in range(min(per_page, n_passages - k * per_page)):
            t = ""
            while len(t) < 200:
                t += rng.choice(sentences)
            texts.append(t[:500])
        body = "\n".join(texts)
        issue = Issue(id=f"syn{k:06d}", source=f"syn{k:06d}.txt", checksum=f"{k}", encoding="utf-8",
                      paper="衡阳日报", date=date, date_source="masthead", issue_no=str(10000 + k), page=1)
        article = Article(index=0, headline=f"合成报道{k}", start=0, end=len(body))
        passages, pos = [], 0
        for i, t in enumerate(texts):
            passages.append(Passage(id=f"syn{k:06d}:{i:04d}", issue_id=issue.id, article_index=0, ordinal=i,
                                    text=t, start=pos, end=pos + len(t)))
            pos += len(t) + 1
        yield Page(issue=issue, articles=[article], text=body), passages


def bench_synthetic(n_passages: int, questions: list[str]) -> dict:
    embedder = load_embedder()
    index = Path(tempfile.mkdtemp(prefix="qa-bench-syn-")) / "index"
    archive = Archive(index)
    archive.store.check_embedder(embedder.model_id, embedder.dim)
    rng = np.random.default_rng(7)
    pages = list(synthetic_pages(n_passages, per_page=100))
    sample = [p.text for _, ps in pages[:5] for p in ps][:256]
    t0 = time.perf_counter()
    base = embedder.embed_passages(sample)
    embed_rate = len(sample) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with archive.writer():
        for page, passages in pages:
            vecs = base[rng.integers(0, len(base), len(passages))] + rng.normal(0, 0.02, (len(passages), embedder.dim))
            vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
            archive.write_page(page, passages, vecs, [tokenize(p.text) for p in passages])
        store_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        archive.refresh_derived()
        derived_s = time.perf_counter() - t1
    t0 = time.perf_counter()
    snap = Archive(index).snapshot()
    load_s = time.perf_counter() - t0
    retriever = HybridRetriever(Archive(index), embedder)
    retriever.search(questions[0], 5)
    return {
        "passages": snap.size, "pages": len(pages),
        "embed_passages_per_s_real_model": round(embed_rate, 1),
        "store_write_s": round(store_s, 1), "search_files_build_s": round(derived_s, 1),
        "snapshot_load_s": round(load_s, 2),
        "search_in_process": latency(lambda q: retriever.search(q, 5), questions, rounds=1),
        "search_with_date_filter": latency(
            lambda q: retriever.search(q, 5, date_from="2010-01-01", date_to="2012-12-31"), questions, rounds=1),
        "index_dir_mb": round(sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    questions = [q.question for q in load_questions(ROOT / "eval" / "dev.jsonl")]
    out = {"seeds": bench_seeds(questions, http=not args.skip_http)}
    out["peak_rss_mb_after_seeds"] = peak_rss_mb()
    if not args.skip_synthetic:
        out["synthetic"] = bench_synthetic(args.passages, questions)
        out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    print("rerun: python benchmarks/bench_retrieval.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
