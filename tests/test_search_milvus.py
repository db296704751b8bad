"""The Milvus search backend, for real: Milvus Lite (the `milvus-lite` package) in this process
or as a server on 127.0.0.1 shared by several processes. The store is a fixture parameter
(`store_env`: SQLite today) so other stores run the same tests.

A real Milvus server beyond Lite is tested only when QA_MILVUS_URI names one that answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import DEV, ROOT, SEEDS, LiveServer, _die_with_parent, free_port
from test_segments import make_page, write

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request) -> dict[str, str]:
    """Environment naming the store: SQLite in the index folder, or a fresh database on the
    session's throwaway PostgreSQL cluster (tests/pg_support.py)."""
    if request.param == "sqlite":
        return {}
    return {"QA_STORE_URL": request.getfixturevalue("pg_db_url")}


def _use(monkeypatch, env: dict[str, str]) -> None:
    from qa.config import get_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


@pytest.fixture
def milvus(monkeypatch, store_env):
    """QA_SEARCH_BACKEND=milvus with Milvus Lite in the index folder, for this test."""
    from qa.config import get_settings

    _use(monkeypatch, {**store_env, "QA_SEARCH_BACKEND": "milvus", "QA_MILVUS_URI": "milvus.db"})
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _archive(path: Path):
    from qa.index import Archive

    return Archive(path)


def _ids(archive, vec_ids) -> list[str]:
    rows = archive.store.passages_by_vec_id([int(v) for v in vec_ids])
    return [rows[int(v)].id for v in vec_ids if int(v) in rows]


# -- the write path, without the model (pages come with their own vectors) ------------------
def test_pages_are_searched_filtered_replaced_and_removed(tmp_path, milvus):
    archive = _archive(tmp_path / "index")
    write(archive, make_page(0, date="2021-12-01"), make_page(1, date="2022-01-05", issue_no="18100"),
          make_page(2, date="2022-01-06"))
    view = archive.snapshot()
    assert view.size == 15 == archive.store.counts()["passages"]
    page, passages, vectors, tokens = make_page(1, date="2022-01-05", issue_no="18100")
    top = view.dense_top(vectors[2], 3)
    assert _ids(archive, list(top))[0] == passages[2].id and max(top.values()) == pytest.approx(1.0, abs=0.02)
    assert _ids(archive, [view.lexical_search(tokens[3]).best()]) == [passages[3].id]
    docs = [set(t) for k in range(3) for t in make_page(k)[3]]
    for term in {*tokens[3], "港口", "不存在的词"}:  # document frequencies behind idf
        assert view.df(term) == sum(term in d for d in docs), term

    def pages(flt):
        return sorted({i.split(":")[0] for i in _ids(archive, view.dense_top(vectors[0], 50, flt))})
    assert pages(view.where("2022-01-01", None, None)) == ["p0001", "p0002"]
    assert pages(view.where(None, "2021-12-31", None)) == ["p0000"]
    assert pages(view.where(None, None, "18100")) == ["p0001"]
    assert not view.any_match(view.where(None, None, "99999"))

    write(archive, make_page(1, n=2, date="2022-01-05", issue_no="18100"))  # replaced by a shorter version
    with archive.writer():
        assert archive.remove_page("p0002.txt")
        archive.refresh_derived()
    view = archive.snapshot()
    assert view.size == 7 == archive.search.count() == archive.store.counts()["passages"]
    found = _ids(archive, view.dense_top(vectors[0], 50))
    assert len(found) == 7 and not any(i.startswith("p0002:") for i in found)


def test_ingesting_the_same_pages_again_changes_nothing(tmp_path, milvus):
    archive = _archive(tmp_path / "index")
    pages = [make_page(k) for k in range(3)]
    write(archive, *pages)
    before = _ids(archive, archive.snapshot().dense_top(pages[0][2][0], 10))
    archive.search.client.release_collection(archive.search.name)  # as a process reopening Milvus Lite finds it
    write(archive, *pages)
    view = archive.snapshot()
    assert view.size == 15 == archive.search.count()
    assert sorted(_ids(archive, view.dense_top(pages[0][2][0], 10))) == sorted(before)


def test_a_crashed_writers_rows_are_never_shown_and_are_cleaned_up(tmp_path, milvus):
    from qa.index import _rows

    archive = _archive(tmp_path / "index")
    write(archive, make_page(0))
    page, passages, vectors, tokens = make_page(5)
    with pytest.raises(RuntimeError):
        with archive.writer(), archive.store.transaction() as tx:  # staged in Milvus, never committed
            vec_ids = archive.store.replace_page(tx, page, passages, vectors)
            archive.search.stage(tx, _rows(page, passages, vec_ids, vectors, tokens), page.issue.source)
            raise RuntimeError("writer died")
    from qa.search_milvus import MilvusView

    assert archive.search.count() == 10 and archive.store.counts()["passages"] == 5
    held = MilvusView(archive.search, archive.store.generation()).dense_top(vectors[0], 10)
    assert len(held) == 10 and len(_ids(archive, held)) == 5  # Milvus holds them; the store has none of them
    assert not any(i.startswith("p0005:") for i in _ids(archive, held))
    archive.search.client.release_collection(archive.search.name)  # as a process reopening Milvus Lite finds it
    reader = _archive(tmp_path / "index")
    assert reader.snapshot().size == 5 == reader.search.count()  # the next reader (no writer busy) cleans up


def test_a_rebuild_from_the_store_swaps_the_collection_and_keeps_results(tmp_path, milvus):
    archive = _archive(tmp_path / "index")
    pages = [make_page(k) for k in range(3)]
    write(archive, *pages)
    q = pages[1][2][3]
    before = _ids(archive, archive.snapshot().dense_top(q, 5))
    first = archive.search._physical()
    with archive.writer():
        archive.refresh_derived(rebuild=True)
    assert archive.search._physical() != first and first not in archive.search.client.list_collections()
    assert _ids(archive, archive.snapshot().dense_top(q, 5)) == before
    assert archive.derived_generation() == archive.store.generation()


def test_ingest_rebuild_with_another_model_dimension(tmp_path, milvus):
    archive = _archive(tmp_path / "index")
    write(archive, make_page(0))
    page, passages, vectors, tokens = make_page(7)
    small = vectors[:, :16] / np.linalg.norm(vectors[:, :16], axis=1, keepdims=True)
    with archive.writer():
        archive.clear()  # as `qa ingest --rebuild` does before writing every page again
        archive.write_pages([(page, passages, small, tokens)])
        archive.refresh_derived()
    view = archive.snapshot()
    assert view.size == 5 and _ids(archive, list(view.dense_top(small[1], 1))) == [passages[1].id]


# -- the seed pages with the real model ------------------------------------------------------
class _MilvusEnv:
    """QA_SEARCH_BACKEND=milvus (Milvus Lite in the index folder) while in the `with` block: an
    Archive keeps the backend it was opened with, so the rest of the session stays on FAISS."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = {"QA_SEARCH_BACKEND": "milvus", "QA_MILVUS_URI": "milvus.db", **(env or {})}

    def __enter__(self):
        self.mp = pytest.MonkeyPatch()
        _use(self.mp, self.env)

    def __exit__(self, *exc):
        from qa.config import get_settings

        self.mp.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def milvus_seed_index(tmp_path_factory):
    """The five seed pages ingested with QA_SEARCH_BACKEND=milvus (Milvus Lite, SQLite store)."""
    from qa.ingest import ingest_paths

    directory = tmp_path_factory.mktemp("milvus-seed") / "index"
    with _MilvusEnv():
        report = ingest_paths([SEEDS], directory, progress=False)
    assert report.pages == 5 and not report.failures
    return directory


@pytest.fixture(scope="module")
def milvus_retriever(milvus_seed_index):
    from qa.embed import load_embedder
    from qa.retrieve import HybridRetriever

    with _MilvusEnv():
        archive = _archive(milvus_seed_index)
    return HybridRetriever(archive, load_embedder())


@pytest.mark.slow
def test_eval_on_milvus_is_within_002_of_faiss(milvus_retriever, retriever):
    from qa.evaluate import evaluate_retrieval, load_questions

    assert type(retriever.archive.search).__name__ == "FaissIndex"
    questions = load_questions(DEV)
    faiss_ = evaluate_retrieval(questions, retriever, top_k=5)["overall"]
    milvus_ = evaluate_retrieval(questions, milvus_retriever, top_k=5)["overall"]
    assert type(milvus_retriever.archive.search).__name__ == "MilvusIndex"
    for metric in ("recall@1", "recall@5", "mrr@10"):
        assert abs(milvus_[metric] - faiss_[metric]) <= 0.02, (metric, faiss_, milvus_)


@pytest.mark.slow
def test_search_and_ask_with_filters_on_milvus(milvus_retriever):
    from qa.answer import Answerer
    from qa.evaluate import contains_evidence

    hits = milvus_retriever.search("衡阳在全国先进制造业百强市榜单中排第几位？", top_k=5)
    assert contains_evidence(hits[0].text, ["衡阳在该榜单中位列第88位"])
    c = hits[0].citation
    assert (c.date, c.issue, c.page) == ("2021-11-30", "18012", 1)
    assert all(h.citation.issue == "18012" for h in milvus_retriever.search("衡阳", top_k=10, issue="18012"))
    assert milvus_retriever.search("衡阳", top_k=5, issue="99999") == []
    dated = milvus_retriever.search("衡阳", top_k=10, date_from="2021-11-30", date_to="2021-11-30")
    assert dated and all(h.citation.date == "2021-11-30" for h in dated)
    answer = Answerer(milvus_retriever).ask("衡阳在全国先进制造业百强市榜单中排第几位？")
    assert not answer.no_answer and answer.citations


@pytest.mark.slow
def test_qa_serve_reopens_a_milvus_lite_file(tmp_path, milvus_seed_index):
    index = tmp_path / "index"
    shutil.copytree(milvus_seed_index, index)  # this process holds the original's lock
    server = LiveServer(index, env={"QA_SEARCH_BACKEND": "milvus", "QA_MILVUS_URI": "milvus.db"},
                        log_path=tmp_path / "serve.log")
    try:
        url = server.wait().url
        body = httpx.post(f"{url}/api/search", json={"query": "衡阳在全国先进制造业百强市榜单中排第几位？",
                                                     "top_k": 3, "issue": "18012"}, timeout=120).json()
        assert body["results"] and all(r["citation"]["issue"] == "18012" for r in body["results"]), body
        chat = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                          json={"messages": [{"role": "user", "content": "衡阳的云绩效平台哪天投入运行？"}]})
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"], chat.text
    finally:
        server.stop()


# -- several processes: Milvus Lite as a server on 127.0.0.1 ----------------------------------
@pytest.fixture
def milvus_server(tmp_path):
    """`milvus-lite server` on 127.0.0.1 (several processes share it); stopped by its PID."""
    port = free_port()
    log = open(tmp_path / "milvus.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "milvus"),
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_for_milvus(uri, proc, tmp_path / "milvus.log")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_milvus(uri: str, proc, log: Path, timeout: float = 60) -> None:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited: {log.read_text()[-2000:]}")
        try:
            MilvusClient(uri=uri, timeout=2).list_collections()
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"milvus-lite server did not come up on {uri}")


@pytest.mark.slow
def test_two_servers_and_an_ingesting_process_share_one_milvus(tmp_path, milvus_seed_index, milvus_server,
                                                                 store_env):
    index = tmp_path / "index"
    shutil.copytree(milvus_seed_index, index, ignore=shutil.ignore_patterns("milvus.db"))
    env = {**store_env, "QA_SEARCH_BACKEND": "milvus", "QA_MILVUS_URI": milvus_server, "QA_INDEX_DIR": str(index)}
    qa = [sys.executable, "-m", "qa.cli"]
    run_env = {**os.environ, **env}
    if "QA_STORE_URL" in store_env:  # the seed archive moved into PostgreSQL + Milvus, nothing re-embedded
        moved = subprocess.run([*qa, "migrate", "--index", str(index), "--store-url", "",
                                "--to-store-url", store_env["QA_STORE_URL"], "--to-search", "milvus"],
                               env={**run_env, "QA_STORE_URL": ""}, cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
        assert moved.returncode == 0, moved.stderr
    else:
        subprocess.run([*qa, "reindex"], env=run_env, cwd=ROOT, check=True, capture_output=True, timeout=600)
    servers = [LiveServer(index, env=env, log_path=tmp_path / f"serve-{k}.log") for k in range(2)]
    try:
        for s in servers:
            s.wait()
        extra = tmp_path / "new"
        extra.mkdir()
        page = next(p for p in sorted(SEEDS.glob("*.txt")) if "百强市" in p.read_text(encoding="utf-8"))
        text = page.read_text(encoding="utf-8").replace("衡阳", "衡州")
        (extra / "复刊-页.txt").write_text(text, encoding="utf-8")
        question = {"query": "衡州在全国先进制造业百强市榜单中排第几位？", "top_k": 5}
        ingest = subprocess.Popen([*qa, "ingest", str(extra)], env=run_env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = _poll_while(ingest, servers, question)
        assert ingest.returncode == 0
        for s in servers:  # both see the new page once the ingest is done
            body = httpx.post(f"{s.url}/api/search", json=question, timeout=60).json()
            assert any("衡州" in r["text"] for r in body["results"]), body
        assert seen["statuses"] == {200}
        ask = httpx.post(f"{servers[0].url}/api/ask", json={"question": question["query"]}, timeout=120)
        assert ask.status_code == 200 and ask.json()["citations"], ask.text
        issues = httpx.get(f"{servers[1].url}/api/issues", timeout=60)
        assert issues.status_code == 200 and len(issues.json()["issues"]) == 6, issues.text
        bad = httpx.post(f"{servers[1].url}/api/search", json={"query": "衡阳", "date_from": "2021-13-01"},
                         timeout=60)
        assert bad.status_code == 422
        subprocess.run([*qa, "remove", str(extra / "复刊-页.txt")], env=run_env, cwd=ROOT, check=True,
                       capture_output=True)
        for s in servers:
            body = httpx.post(f"{s.url}/api/search", json=question, timeout=60).json()
            assert not any("衡州" in r["text"] for r in body["results"]), body
    finally:
        for s in servers:
            s.stop()


def _poll_while(proc, servers, question) -> dict:
    """Ask both servers until `proc` ends: every status, and each new-page hit must open in full
    (its citation resolves: no half-written page)."""
    statuses: set[int] = set()
    while proc.poll() is None:
        for s in servers:
            r = httpx.post(f"{s.url}/api/search", json=question, timeout=60)
            statuses.add(r.status_code)
            for hit in r.json().get("results", []) if r.status_code == 200 else []:
                if "衡州" in hit["text"]:
                    c = httpx.get(f"{s.url}/api/citations/{hit['chunk_id']}", timeout=60)
                    statuses.add(c.status_code)
        time.sleep(0.2)
    proc.wait()
    return {"statuses": statuses}


def _real_milvus() -> str | None:
    """QA_MILVUS_URI when it names a Milvus server (http://host:19530) that answers, else None."""
    uri = os.environ.get("QA_MILVUS_URI", "")
    if "://" not in uri:
        return None
    try:
        from pymilvus import MilvusClient

        MilvusClient(uri=uri, token=os.environ.get("QA_MILVUS_TOKEN", ""), timeout=5).list_collections()
        return uri
    except Exception:
        return None


def test_a_real_milvus_server(tmp_path, monkeypatch):
    uri = _real_milvus()
    if uri is None:
        pytest.skip("QA_MILVUS_URI names no reachable Milvus server (Standalone/Distributed, http://host:19530); "
                    "Milvus Lite is tested above")
    _use(monkeypatch, {"QA_SEARCH_BACKEND": "milvus", "QA_MILVUS_URI": uri,
                       "QA_MILVUS_COLLECTION": f"qa_test_{os.getpid()}"})
    archive = _archive(tmp_path / "index")
    try:
        write(archive, make_page(0), make_page(1))
        page, passages, vectors, tokens = make_page(1)
        view = archive.snapshot()
        assert view.size == 10
        assert _ids(archive, list(view.dense_top(vectors[0], 1))) == [passages[0].id]
        assert _ids(archive, [view.lexical_search(tokens[2]).best()]) == [passages[2].id]
    finally:
        physical = archive.search._physical()
        archive.search.client.drop_alias(archive.search.name)
        archive.search.client.drop_collection(physical)
