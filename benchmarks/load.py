"""Concurrent load on a live server: N clients for T seconds of /api/search and /api/ask.

Reports requests/s, p50/p95/p99 latency and errors. Bounded in time (--seconds) and count
(--max-requests); only ever talks to 127.0.0.1. Starts its own `qa serve` (with `--workers N`)
over a copy of the seed index unless --url is given. Several client counts (`--clients 1,32`)
run one after the other against the same server, so their ratio is measured in one run; for a
server it started, it also reports the server's CPU seconds per request (all its processes), and
from that the most requests/s this machine's cores could give.

    python benchmarks/load.py --clients 1,32 --seconds 60
    python benchmarks/load.py --clients 1,32 --workers 2 --seconds 30
    python benchmarks/load.py --url http://127.0.0.1:8000 --clients 8 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run(url: str, clients: int, seconds: float, max_requests: int, questions: list[str]) -> dict:
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {"search": [], "ask": []}
    errors: list[str] = []
    issued = 0

    def client(seed: int) -> None:
        nonlocal issued
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                kind = rng.choice(["search", "ask"])
                q = rng.choice(questions)
                body = {"query": q, "top_k": 5} if kind == "search" else {"question": q}
                t0 = time.perf_counter()
                try:
                    r = http.post(f"/api/{kind}", json=body)
                    ok = r.status_code == 200 and (r.json().get("results") if kind == "search"
                                                   else r.json().get("answer"))
                    err = None if ok else f"{kind} HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    err = f"{kind} {type(exc).__name__}"
                dt = time.perf_counter() - t0
                with lock:
                    if err:
                        errors.append(err)
                    else:
                        latencies[kind].append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = latencies["search"] + latencies["ask"]
    report = {"clients": clients, "seconds": round(wall, 1), "requests": len(all_lat) + len(errors),
              "requests_per_s": round((len(all_lat) + len(errors)) / wall, 2), "errors": len(errors),
              "error_kinds": sorted(set(errors))}
    for name, xs in [("all", all_lat), *latencies.items()]:
        report[name] = {"n": len(xs), **{f"p{q}_ms": round(1000 * percentile(xs, q), 1) for q in (50, 95, 99)},
                        "mean_ms": round(1000 * statistics.fmean(xs), 1) if xs else None}
    return report


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children still running (uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _server_processes(pid: int) -> int:
    """How many processes answer: uvicorn's worker children, or the one server process."""
    return len([k for k in _children(pid) if "spawn_main" in _cmdline(k)]) or 1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def warm_up(url: str, questions: list[str], connections: int = 1) -> None:
    """Every question once through each endpoint on each of `connections` connections at once:
    with several server processes, each gets some connections, so every process has loaded
    lazily and cached answer sentences before anything is measured."""

    def one_connection(_: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            for q in questions:
                http.post("/api/search", json={"query": q, "top_k": 5})
                http.post("/api/ask", json={"question": q})

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one_connection, range(connections)))


def measured(url: str, clients: int, args, questions: list[str], server_pid: int | None) -> dict:
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    own0 = time.process_time()
    health0 = httpx.get(f"{url}/health", timeout=60).json()
    report = run(url, clients, args.seconds, args.max_requests, questions)
    health = httpx.get(f"{url}/health", timeout=60).json()
    if "embed_calls" in health:  # one process's batcher (with --workers N, the one that answered)
        calls = health["embed_calls"] - health0["embed_calls"]
        report["embed_requests_per_model_call"] = round(
            (health["embed_requests"] - health0["embed_requests"]) / calls, 2) if calls > 0 else None
    if report["requests"]:
        report["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - own0) / report["requests"], 1)
    if server_pid and report["requests"]:
        per = (cpu_seconds(server_pid) - cpu0) / report["requests"]
        report["server_cpu_ms_per_request"] = round(1000 * per, 1)
        report["cores"] = os.cpu_count()
        report["max_requests_per_s_by_server_cpu"] = round(os.cpu_count() / per, 1) if per else None
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server on 127.0.0.1 (default: start one)")
    ap.add_argument("--clients", default="32", help="client counts, comma-separated: 1,32")
    ap.add_argument("--workers", type=int, help="qa serve --workers N for a server started here (default: none "
                    "given, so the server's own default: QA_WORKERS, else one per 4 cores)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--index", type=Path, help="serve a copy of this built index (default: ingest seeds/ afresh)")
    ap.add_argument("--max-requests", type=int, default=100_000)
    args = ap.parse_args()
    questions = [json.loads(line)["question"] for line in (ROOT / "eval" / "dev.jsonl").read_text().splitlines()
                 if line.strip()]
    server = None
    url = args.url
    if url:
        if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("load.py only targets this machine (127.0.0.1)")
    else:
        from conftest import LiveServer  # the same launcher the tests use

        from qa.config import get_settings
        from qa.ingest import ingest_paths

        index = Path(tempfile.mkdtemp(prefix="qa-load-")) / "index"
        if args.index:
            shutil.copytree(args.index, index)
        else:
            ingest_paths([ROOT / "seeds"], index, embed_model=get_settings().embed_model, progress=False)
        workers = ("--workers", str(args.workers)) if args.workers else ()
        server = LiveServer(index, log_path=index.parent / "server.log", args=workers).wait()
        url = server.url
    counts = [int(c) for c in str(args.clients).split(",")]
    try:
        processes = _server_processes(server.proc.pid) if server else None
        if server:  # every question through each endpoint first: lazy loads and the
            warm_up(url, questions, 2 * processes)  # answer-sentence cache are not what is measured
        reports = [measured(url, c, args, questions, server.proc.pid if server else None) for c in counts]
    finally:
        if server:
            server.stop()
    out = reports[0] if len(reports) == 1 else {"workers": args.workers or f"default ({processes or '?'} processes)",
                                                 "runs": reports}
    if len(reports) > 1:
        out["throughput_ratio"] = round(reports[-1]["requests_per_s"] / reports[0]["requests_per_s"], 2)
        last = reports[-1]
        if "server_cpu_ms_per_request" in last and reports[0]["all"]["mean_ms"]:
            cpu = last["server_cpu_ms_per_request"] + last["client_cpu_ms_per_request"]
            out["ratio_bound_by_cpu"] = round(reports[0]["all"]["mean_ms"] * (os.cpu_count() or 1) / cpu, 2)
    flag = f" --workers {args.workers}" if args.workers else ""
    out["rerun"] = f"python benchmarks/load.py --clients {args.clients}{flag} --seconds {args.seconds:g}"
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
