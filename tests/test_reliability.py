"""Reliability and security: bad requests against a live server, API key, CORS, crash-safe
ingest (SIGKILL mid-run), ingest while serving, concurrent requests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from qa.chunk import chunk_page
from qa.index import Archive
from qa.parse import parse_page
from qa.store import Store

from conftest import ROOT, SEEDS, LiveServer

# (what is sent, expected status) — each must get a 4xx with a JSON message, server stays up
BAD_REQUESTS = [
    ("POST", "/api/search", {"content": b"{not json"}, 422),
    ("POST", "/api/search", {"json": {"query": 123}}, 422),
    ("POST", "/api/search", {"json": {"top_k": 5}}, 422),
    ("POST", "/api/search", {"json": {"query": "   "}}, 422),
    ("POST", "/api/search", {"json": {"query": "衡阳", "top_k": 0}}, 422),
    ("POST", "/api/search", {"json": {"query": "衡阳", "top_k": 10_000}}, 422),
    ("POST", "/api/search", {"json": {"query": "衡阳", "top_k": "five"}}, 422),
    ("POST", "/api/search", {"json": {"query": "衡阳", "date_from": "30/11/2021"}}, 422),
    ("POST", "/api/search", {"json": {"query": "衡阳", "date_to": "2021-02-30"}}, 422),
    ("POST", "/api/search", {"json": ["query", "衡阳"]}, 422),
    ("POST", "/api/ask", {"json": {"question": ""}}, 422),
    ("POST", "/api/ask", {"json": {"question": "\n\t "}}, 422),
    ("POST", "/api/ask", {"json": {"question": "衡" * 2001}}, 422),
    ("POST", "/api/ask", {"json": {"question": "衡阳", "history": [{"role": "robot", "content": "x"}]}}, 422),
    ("POST", "/api/ask", {"json": {"question": "衡阳", "history": "not a list"}}, 422),
    ("POST", "/api/ask", {"json": {"question": "衡阳", "stream": "maybe"}}, 422),
    ("POST", "/api/ask", {"content": b"x" * 200_000, "headers": {"content-type": "application/json"}}, 413),
    ("POST", "/api/ask", {"content": (b"a" * 1000 for _ in range(200)),
                          "headers": {"content-type": "application/json"}}, 413),  # chunked, no length
    ("POST", "/v1/chat/completions", {"json": {"messages": []}}, 422),
    ("POST", "/v1/chat/completions", {"json": {"messages": [{"role": "assistant", "content": "hi"}]}}, 422),
    ("GET", "/api/citations/does-not-exist", {}, 404),
    ("GET", "/api/citations/../../etc/passwd", {}, 404),
    ("GET", "/api/citations/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("GET", "/api/issues/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("GET", "/api/issues/no-such-issue", {}, 404),
    ("GET", "/api/nothing-here", {}, 404),
    ("GET", "/api/search", {}, 405),
]


def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(live_server):
    with httpx.Client(base_url=live_server, timeout=60) as http:
        for method, path, kwargs, status in BAD_REQUESTS:
            r = http.request(method, path, **kwargs)
            assert r.status_code == status, (path, kwargs.get("json"), r.status_code, r.text[:200])
            message = r.json()["error"]["message"]
            assert isinstance(message, str) and message, path
        assert http.get("/health").json()["status"] == "ok"
        ok = http.post("/api/search", json={"query": "衡阳物流枢纽", "top_k": 1})
        assert ok.status_code == 200 and ok.json()["results"]


# What a curl user gets wrong, and the words the answer must hold to say what to do about it.
MENDABLE_REQUESTS = [
    ({"content": b'{"query": "x"}'}, 422, "Content-Type: application/json (this request had no Content-Type)"),
    ({"content": b'{"query": "x"}', "headers": {"content-type": "application/x-www-form-urlencoded"}}, 422,
     "Content-Type: application/json (this request had Content-Type 'application/x-www-form-urlencoded')"),
    ({"content": b'{"query": "x",}', "headers": {"content-type": "application/json"}}, 422,
     "the body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 15 (char 14)"),
    ({"content": b"", "headers": {"content-type": "application/json"}}, 422, "the body is empty"),
    ({"json": ["query", "衡阳"]}, 422, "the body must be a JSON object {...}, not an array"),
    ({"json": {"query": "衡阳", "date_from": "30/11/2021"}}, 422, "date_from: dates are YYYY-MM-DD"),
    ({"json": {"query": "衡阳", "date_from": "2021-12-01", "date_to": "2021-11-01"}}, 422,
     "the date range is reversed"),
    ({"content": '{"query": "衡阳"}'.encode("gbk"), "headers": {"content-type": "application/json"}}, 400,
     "the body is not UTF-8 text (byte 0xba at position 11)"),
]


@pytest.mark.parametrize("request_kwargs, status, words", MENDABLE_REQUESTS,
                         ids=["no-type", "form-type", "bad-json", "empty", "array", "bad-field", "reversed", "gbk"])
def test_bad_bodies_are_answered_with_what_to_mend(live_server, request_kwargs, status, words):
    r = httpx.post(f"{live_server}/api/search", timeout=60, **request_kwargs)
    assert (r.status_code, r.headers["content-type"]) == (status, "application/json")
    assert words in r.json()["error"]["message"]


def test_a_wrong_method_says_which_to_use(live_server):
    r = httpx.get(f"{live_server}/api/ask")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json() == {"error": {"message": "GET is not allowed on /api/ask; use POST"}}


@pytest.fixture(scope="module")
def keyed_server(seed_index, tmp_path_factory):
    directory = tmp_path_factory.mktemp("keyed") / "index"
    shutil.copytree(seed_index, directory)
    server = LiveServer(directory, env={"QA_API_KEY": "s3cret-key", "QA_CORS_ORIGINS": "http://newsroom.example"},
                        log_path=directory.parent / "server.log")
    try:
        yield server.wait().url
    finally:
        server.stop()


def test_api_key_guards_api_and_openai_routes(keyed_server):
    body = {"query": "衡阳", "top_k": 1}
    assert httpx.post(f"{keyed_server}/api/search", json=body).status_code == 401
    wrong = httpx.post(f"{keyed_server}/api/search", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    assert httpx.get(f"{keyed_server}/api/issues").status_code == 401
    assert httpx.post(f"{keyed_server}/v1/chat/completions",
                      json={"messages": [{"role": "user", "content": "衡阳"}]}).status_code == 401
    good = httpx.post(f"{keyed_server}/api/search", json=body, headers={"Authorization": "Bearer s3cret-key"},
                      timeout=60)
    assert good.status_code == 200
    # health and the page stay open
    assert httpx.get(f"{keyed_server}/health").status_code == 200
    assert httpx.get(f"{keyed_server}/").status_code == 200


def test_openai_client_sends_the_key(keyed_server):
    from openai import AuthenticationError, OpenAI

    q = [{"role": "user", "content": "衡阳获批设立的跨境电商综合试验区全称是什么？"}]
    good = OpenAI(base_url=f"{keyed_server}/v1", api_key="s3cret-key", max_retries=0, timeout=60)
    reply = good.chat.completions.create(model="m", messages=q)
    # The key let the question through to the archive: its passage is cited (whether the answer
    # quotes it or calls it the closest passage is tests/test_answer.py's business).
    assert reply.choices[0].message.content
    assert any("跨境电子商务综合试验区" in c["text"] for c in reply.model_extra["citations"]), reply
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{keyed_server}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="m", messages=q)


def test_cors_is_closed_by_default_and_opened_by_configuration(live_server, keyed_server):
    pre = {"Origin": "http://newsroom.example", "Access-Control-Request-Method": "POST"}
    closed = httpx.options(f"{live_server}/api/search", headers=pre)
    assert "access-control-allow-origin" not in closed.headers
    opened = httpx.options(f"{keyed_server}/api/search", headers=pre)
    assert opened.headers.get("access-control-allow-origin") == "http://newsroom.example"
    other = httpx.options(f"{keyed_server}/api/search", headers={**pre, "Origin": "http://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "http://evil.example"


def _variant_pages(folder: Path, copies: int) -> list[Path]:
    """Distinct pages (new names, one changed line each) made from the seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in sorted(SEEDS.glob("*.txt")):
        text = seed.read_text(encoding="utf-8")
        for k in range(copies):
            p = folder / f"v{k}_{seed.name}"
            p.write_text(text + f"\n\n本报编辑部第{k}次校对说明。\n", encoding="utf-8")
            out.append(p)
    return out


def _assert_consistent(index_dir: Path) -> Store:
    """Opens, answers, and holds no half page and no duplicate."""
    archive = Archive(index_dir)
    snap = archive.snapshot()  # repairs search files that lag behind the store
    store = archive.store
    counts = store.counts()
    assert snap.size == counts["passages"] and len(set(snap.ids)) == snap.size
    for issue in store.issues():
        stored = sum(store.passage_counts(issue.id).values())
        assert stored == len(chunk_page(parse_page(store.file_of(issue.source)))), f"half page {issue.source}"
    return store


def test_sigkill_mid_ingest_leaves_a_consistent_index_and_a_rerun_completes(fresh_index):
    pages = _variant_pages(fresh_index.parent / "pages", copies=3)
    env = {**os.environ, "QA_INDEX_DIR": str(fresh_index)}
    cmd = [sys.executable, "-m", "qa.cli", "ingest", str(fresh_index.parent / "pages")]
    store = Store.open(fresh_index)
    start_gen = store.generation()
    for wait_commits in (1, 4):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while store.generation() < start_gen + wait_commits and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_consistent(fresh_index)
        start_gen = store.generation()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    store = _assert_consistent(fresh_index)
    assert store.counts()["issues"] == 5 + len(pages)
    # the index answers from a page the rerun completed
    r = subprocess.run([sys.executable, "-m", "qa.cli", "search", "本报编辑部第2次校对说明", "--json", "--top-k", "3"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "第2次校对说明" in r.stdout


def test_server_picks_up_a_completed_ingest_atomically(fresh_index, tmp_path):
    server = LiveServer(fresh_index, log_path=tmp_path / "server.log").wait()
    try:
        before = httpx.get(f"{server.url}/health").json()
        new = _variant_pages(tmp_path / "new", copies=1)[:2]
        stop = threading.Event()
        statuses: list[int] = []

        def hammer():
            with httpx.Client(base_url=server.url, timeout=60) as http:
                while not stop.is_set():
                    r = http.post("/api/search", json={"query": "本报编辑部第0次校对说明", "top_k": 3})
                    statuses.append(r.status_code)
                    # a result never points at a passage the lookup cannot resolve
                    for hit in r.json().get("results", []):
                        assert http.get(f"/api/citations/{hit['chunk_id']}").status_code == 200

        t = threading.Thread(target=hammer)
        t.start()
        env = {**os.environ, "QA_INDEX_DIR": str(fresh_index)}
        done = subprocess.run([sys.executable, "-m", "qa.cli", "ingest", *map(str, new)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        time.sleep(0.5)
        stop.set()
        t.join(60)
        assert statuses and set(statuses) == {200}
        after = httpx.get(f"{server.url}/health").json()
        assert after["issues"] == before["issues"] + 2
        hits = httpx.post(f"{server.url}/api/search", json={"query": "本报编辑部第0次校对说明", "top_k": 3},
                          timeout=60).json()["results"]
        assert any("第0次校对说明" in h["text"] for h in hits)
    finally:
        server.stop()


def test_concurrent_search_and_ask_calls_all_succeed(live_server):
    questions = ["衡阳在全国先进制造业百强市榜单中排第几位？", "刘国中出席了什么会议？", "朱健慰问一线医务人员时去了哪两家医院？",
                 "衡阳获批设立的跨境电商综合试验区全称是什么？"]

    def one(i: int):
        q = questions[i % len(questions)]
        if i % 2:
            r = httpx.post(f"{live_server}/api/search", json={"query": q, "top_k": 3}, timeout=120)
            return r.status_code, r.json()["results"][0]["text"]
        r = httpx.post(f"{live_server}/api/ask", json={"question": q}, timeout=120)
        return r.status_code, r.json()["answer"]

    serial = {i: one(i) for i in range(8)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        parallel = list(pool.map(one, range(32)))
    for i, got in enumerate(parallel):
        assert got == serial[i % 8], i  # same answers under load as one at a time


def test_api_key_also_guards_an_app_mounted_under_a_path_prefix(seed_index):
    from fastapi.testclient import TestClient

    from qa.api import create_app
    from qa.config import Settings

    app = create_app(Settings(index_dir=seed_index, api_key="k3y"))
    with TestClient(app, root_path="/qa") as client:
        assert client.get("/qa/api/issues").status_code == 401
        assert client.get("/qa/api/issues", headers={"Authorization": "Bearer k3y"}).status_code == 200
