"""The relational store's contract, run against both implementations (SQLite in the index folder
and a real PostgreSQL started by tests/pg_support.py), plus the CLI on PostgreSQL, the writer lock
across processes and `qa migrate` SQLite → PostgreSQL → SQLite.

Vectors are the seed index's (embedded once per session), so writing the seeds into a store here
costs no embedding; the CLI test embeds two pages for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.index import Archive, IndexBusyError
from qa.ingest import prepare_page
from qa.lookup import issue_detail, issue_list
from qa.parse import PageError, parse_page
from qa.store import IndexMismatchError, StoreError, TermCache, open_store, store_exists

from conftest import ROOT, SEEDS

runner = CliRunner()
SEED_FILES = sorted(SEEDS.glob("*.txt"))
QUESTION = "衡阳获批设立的跨境电商综合试验区全称是什么？"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request) -> str:
    """The store URL of each backend: '' = SQLite in the index folder; a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_db_url")


@pytest.fixture(scope="session")
def seed_vectors(seed_index) -> dict[str, np.ndarray]:
    """Passage id → its stored vector in the session's seed index (SQLite)."""
    store = open_store(seed_index, "")
    ids = store.vec_ids()
    rows = store.passages_by_vec_id(ids.tolist())
    return {rows[v].id: vec for v, vec in zip(ids.tolist(), store.vectors(ids))}


def write_pages(archive: Archive, files: list[Path], vectors: dict[str, np.ndarray] | None = None,
                names: list[str] | None = None) -> None:
    """Write page files as ingest does (identity settled first), with the seed vectors or, for
    pages the seed index never held, random unit vectors."""
    rng = np.random.default_rng(7)
    with archive.writer():
        for k, path in enumerate(files):
            page = parse_page(path, names[k] if names else archive.store.page_name(path))
            archive.store.check_identity(page.issue)
            prep = prepare_page(path, page)
            vecs = np.stack([vectors[p.id] if vectors and p.id in vectors else _unit(rng.normal(size=384))
                             for p in prep.passages]).astype(np.float32)
            archive.write_page(page, prep.passages, vecs, prep.tokens)
        archive.refresh_derived()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _listing(store) -> list[dict]:
    """Everything a reader can see of the archive, minus the page names (which depend on the folder)."""
    out = []
    for i in issue_list(store):
        detail = issue_detail(store, i["id"])
        detail.pop("source")
        out.append(detail)
    return out


def _search(index: Path, url: str, embedder, question: str = QUESTION) -> list[tuple[str, float]]:
    from qa.retrieve import HybridRetriever

    hits = HybridRetriever(Archive(index, store=open_store(index, url)), embedder).search(question, 5)
    return [(h.chunk_id, round(h.score, 4), h.citation.label) for h in hits]


# --- the store contract, on both backends ----------------------------------------------------

def test_the_seeds_read_back_exactly_as_the_sqlite_seed_index_holds_them(url, tmp_path, seed_index, seed_vectors):
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    assert archive.store.generation() == 0 and store_exists(tmp_path / "index", url)
    write_pages(archive, SEED_FILES, seed_vectors)
    store, seed = archive.store, open_store(seed_index, "")
    assert store.counts() == seed.counts() == {"issues": 5, "articles": store.counts()["articles"], "passages": 107}
    assert store.generation() == 5  # one bump per page
    assert _listing(store) == _listing(seed)
    ids = store.vec_ids()
    assert ids.tolist() == list(range(1, 108))  # dense, from 1
    rows = store.passages_by_vec_id(ids.tolist())
    assert set(store.passages_by_id([r.id for r in rows.values()])) == {r.id for r in rows.values()}
    assert np.allclose(store.vectors(ids), np.stack([seed_vectors[rows[v].id] for v in ids.tolist()]), atol=1e-6)
    first = rows[1]
    article = store.article(first.article_id)
    assert article.issue_id == first.issue_id and first.text in article.body
    assert store.issue(first.issue_id).source.endswith(".txt") and store.issue("nope") is None
    assert store.article("nope") is None and store.passages_by_vec_id([10_000]) == {}
    batches = list(store.iter_index_rows(batch=40))
    assert [len(b["vec_ids"]) for b in batches] == [40, 40, 27]
    assert sum((b["texts"] for b in batches), []) == [rows[v].text for v in ids.tolist()]


def test_an_article_body_is_read_from_the_page_text_not_kept_twice(url, tmp_path, seed_vectors):
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    write_pages(archive, SEED_FILES, seed_vectors)
    store = archive.store
    ids = {i.source: i.id for i in store.issues()}
    for path in SEED_FILES:  # headings, bylines and paragraphs, as the parser gives the article
        page = parse_page(path, store.page_name(path))
        assert [a.body for a in store.articles(ids[page.issue.source])] == [a.text for a in page.articles]
    assert store.conn.execute("SELECT count(*) FROM articles WHERE body IS NOT NULL").fetchone()[0] == 0


def test_replacing_a_page_takes_its_old_passages_out_and_never_reuses_an_id(url, tmp_path, seed_vectors):
    pages = tmp_path / "pages"
    pages.mkdir()
    page = pages / "01.txt"
    shutil.copy(SEED_FILES[0], page)
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    write_pages(archive, [page, SEED_FILES[1]], seed_vectors)
    store = archive.store
    before, gen = store.counts(), store.generation()
    old_ids = set(store.vec_ids().tolist())
    old_of_page = {p.vec_id for a in store.articles("01") for p in store.passages_of_article(a.id)}
    text = SEED_FILES[0].read_text(encoding="utf-8")
    page.write_text(text[: len(text) // 2], encoding="utf-8")  # the page, shorter
    write_pages(archive, [page])
    (issue,) = [i for i in store.issues() if i.source == "pages/01.txt"]
    assert issue.id == "01" and store.generation() == gen + 1
    now = store.counts()
    assert now["issues"] == before["issues"] and 0 < now["passages"] < before["passages"]
    mine = {p.vec_id for a in store.articles("01") for p in store.passages_of_article(a.id)}
    now_ids = set(store.vec_ids().tolist())
    assert mine and min(mine) > max(old_ids)  # new rows, their ids never reused
    assert now_ids - old_ids == mine and old_ids - now_ids == old_of_page  # the old version's rows are gone
    assert store.checksum_of("pages/01.txt") == parse_page(page, "x").issue.checksum


def test_removing_a_page_removes_its_articles_and_passages(url, tmp_path, seed_vectors):
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    write_pages(archive, SEED_FILES[:3], seed_vectors)
    store = archive.store
    victim, kept = store.issues()[0], store.issues()[1]
    n_passages, n_articles = sum(store.passage_counts(victim.id).values()), len(store.articles(victim.id))
    gen, before = store.generation(), store.counts()
    with archive.writer():
        assert archive.remove_page(victim.source) is True
        assert archive.remove_page(victim.id) is False  # gone already
        archive.refresh_derived()
    assert store.generation() == gen + 1
    assert store.counts() == {"issues": before["issues"] - 1, "articles": before["articles"] - n_articles,
                              "passages": before["passages"] - n_passages}
    assert store.issue(victim.id) is None and store.articles(victim.id) == []
    assert store.resolve_page(victim.source) is None and store.resolve_page(kept.id) == kept.id
    assert archive.snapshot().size == store.counts()["passages"]


def test_generation_manifest_model_and_terms(url, tmp_path):
    store = open_store(tmp_path / "index", url)
    assert store.manifest()["format_version"] == "3" and store.generation() == 0
    with store.transaction() as tx:
        store.bump_generation(tx)
        store.bump_generation(tx)
    assert store.generation() == 2
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            store.bump_generation(tx)
            raise RuntimeError("rolled back")
    assert store.generation() == 2
    store.check_embedder("model-a", 8)
    store.check_embedder("model-a", 8)
    with pytest.raises(IndexMismatchError, match="model-a"):
        store.check_embedder("model-b", 8)
    with store.transaction() as tx:
        first = store.term_ids(tx, ["衡阳", "日报"])
        again = store.term_ids(tx, ["日报", "新词"])
    assert again["日报"] == first["日报"] and len({*first.values(), again["新词"]}) == 3
    assert store.term_ids(store.conn, ["衡阳", "无此词"], add=False) == {"衡阳": first["衡阳"]}
    reopened = open_store(tmp_path / "index", url)  # a second open finds the schema and keeps the rows
    assert reopened.manifest()["embed_model"] == "model-a" and reopened.generation() == 2


def test_identity_rules_move_rename_and_clash(url, tmp_path, seed_vectors):
    pages = tmp_path / "pages"
    (pages / "a").mkdir(parents=True)
    (pages / "c").mkdir()
    shutil.copy(SEED_FILES[0], pages / "a" / "01.txt")
    shutil.copy(SEED_FILES[1], pages / "c" / "01.txt")
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    write_pages(archive, [pages / "a" / "01.txt", pages / "c" / "01.txt"], seed_vectors)
    store = archive.store
    ids = {i.source: i.id for i in store.issues()}
    assert ids["pages/a/01.txt"] == "01" and ids["pages/c/01.txt"].startswith("01-")  # stem taken: hashed
    (pages / "b").mkdir()
    shutil.move(pages / "a" / "01.txt", pages / "b" / "01.txt")  # moved: same checksum, old file gone
    issue = parse_page(pages / "b" / "01.txt", store.page_name(pages / "b" / "01.txt")).issue
    store.check_identity(issue)
    assert issue.id == "01" and store.issue("01").source == "pages/b/01.txt"
    assert store.resolve_page(str(pages / "b" / "01.txt")) == "01"
    page = parse_page(SEED_FILES[2], "pages/c/01.txt")  # another page claiming a stored page's id
    page.issue.id = "01"
    with pytest.raises(PageError, match="already used"), store.transaction() as tx:  # rolled back
        store.replace_page(tx, page, [], np.zeros((0, 384), np.float32))
    assert store.counts()["issues"] == 2


class _CountingTx:
    """A transaction handle that counts the statements sent through it."""

    def __init__(self, tx):
        self.tx, self.statements = tx, 0

    def execute(self, sql, params=()):
        self.statements += 1
        return self.tx.execute(sql, params)

    def executemany(self, sql, rows):
        self.statements += 1
        return self.tx.executemany(sql, rows)


def test_the_writers_term_cache_holds_only_committed_ids(url, tmp_path):
    store = open_store(tmp_path / "index", url)
    handed: dict[str, int] = {}
    with store.writer_lock():
        with store.transaction() as tx:
            handed |= store.term_ids(tx, ["甲", "乙"])
        with pytest.raises(RuntimeError), store.transaction() as tx:
            store.term_ids(tx, ["丙"])  # its id is given back (SQLite hands it out again)
            raise RuntimeError("rolled back")
        with store.transaction() as tx:
            with pytest.raises(PageError), store.savepoint(tx):
                store.term_ids(tx, ["丁"])
                raise PageError("this page only")
            handed |= store.term_ids(tx, ["戊", "甲"])
            handed |= store.term_ids(tx, ["丙", "丁"])
        assert handed == dict(store.conn.execute("SELECT term, id FROM terms").fetchall())
        assert len(set(handed.values())) == 5
        with store.transaction() as tx:  # known terms come from memory: no statement at all
            spy = _CountingTx(tx)
            assert store.term_ids(spy, ["甲", "丁", "戊"]) == {t: handed[t] for t in ("甲", "丁", "戊")}
            assert spy.statements == 0
            assert store.term_ids(spy, ["甲", "己"])["甲"] == handed["甲"] and spy.statements > 0
        with store.transaction() as tx:  # --rebuild: the ids go with the rows, and so does the cache
            store.clear(tx)
            renumbered = store.term_ids(tx, ["庚", "戊", "甲"])
        assert renumbered == dict(store.conn.execute("SELECT term, id FROM terms").fetchall())
    with store.transaction() as tx:  # no writer lock held: every lookup asks the store
        spy = _CountingTx(tx)
        assert store.term_ids(spy, ["甲"]) == {"甲": renumbered["甲"]} and spy.statements > 0


def test_a_writer_that_holds_every_stored_term_inserts_new_ones_unlooked_and_stays_exact(url, tmp_path):
    store = open_store(tmp_path / "index", url)
    with store.transaction() as tx:  # stored before the writer starts: its cache reads them all
        old = store.term_ids(tx, ["甲", "乙"])
    with store.writer_lock():
        with store.transaction() as tx:  # a new term is inserted and numbered, never looked up first
            spy = _CountingTx(tx)
            handed = store.term_ids(spy, ["甲", "丙"])
            assert handed["甲"] == old["甲"] and spy.statements == 2
        with store.transaction() as tx:  # rows copied past the cache (qa migrate)
            store.load_rows(tx, "terms", [(999, "己")])
        with store.transaction() as tx:
            handed |= store.term_ids(tx, ["己", "庚"])
    with store.writer_lock():  # a new writer reads every term again
        with store.transaction() as tx:  # a clear undone alone (its savepoint), the transaction kept
            with pytest.raises(RuntimeError), store.savepoint(tx):
                store.clear(tx)
                raise RuntimeError("rolled back")
        with store.transaction() as tx:
            handed |= store.term_ids(tx, ["甲", "癸"])
    with store.writer_lock():
        with pytest.raises(RuntimeError), store.transaction() as tx:  # a --rebuild undone
            store.clear(tx)
            store.term_ids(tx, ["丁"])
            raise RuntimeError("rolled back")
        with store.transaction() as tx:  # the terms are back and keep their ids
            handed |= store.term_ids(tx, ["甲", "乙", "戊"])
        assert handed["己"] == 999 and handed["乙"] == old["乙"]
        assert handed == dict(store.conn.execute("SELECT term, id FROM terms").fetchall())
        with store.transaction() as tx:  # a --rebuild that commits: the new ids are all there is
            store.clear(tx)
            renumbered = store.term_ids(tx, ["辛", "甲"])
        with store.transaction() as tx:  # and the writer knows them all again
            spy = _CountingTx(tx)
            renumbered |= store.term_ids(spy, ["壬", "甲"])
            assert spy.statements == 2
        assert renumbered == dict(store.conn.execute("SELECT term, id FROM terms").fetchall())


def test_a_writer_over_a_large_vocabulary_looks_new_terms_up(url, tmp_path, monkeypatch):
    store = open_store(tmp_path / "index", url)
    with store.transaction() as tx:
        old = store.term_ids(tx, ["甲", "乙"])
    monkeypatch.setattr(TermCache, "FILL_LIMIT", 1)
    with store.writer_lock(), store.transaction() as tx:
        spy = _CountingTx(tx)
        assert store.term_ids(spy, ["甲", "丙"])["甲"] == old["甲"] and spy.statements == 3  # looked up first


def test_the_term_cache_is_complete_only_while_it_holds_every_stored_term():
    cache = TermCache(limit=3)
    cache.fill([("甲", 1)])
    cache.begin()
    cache.add({"乙": 2, "丙": 3})
    cache.commit()
    assert cache.complete and cache.lookup(["甲", "丁"]) == ({"甲": 1}, ["丁"])
    cache.begin()
    cache.add({"丁": 4})
    cache.commit()  # past its limit: emptied, and it no longer knows which terms are new
    assert not cache.complete and cache.lookup(["甲"]) == ({}, ["甲"])


def test_pages_share_a_transaction_and_each_stays_all_or_nothing(url, tmp_path, seed_vectors):
    archive = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    store = archive.store
    write_pages(archive, SEED_FILES[:1], seed_vectors)
    taken = store.issues()[0].id
    generation = store.generation()
    batch = []
    for k, path in enumerate(SEED_FILES[1:4]):
        page = parse_page(path, store.page_name(path))
        store.check_identity(page.issue)
        if k == 1:
            page.issue.id = taken  # the store refuses it: its id belongs to another page
        prep = prepare_page(path, page)
        vecs = np.stack([seed_vectors.get(p.id, np.ones(384, np.float32) / 384 ** 0.5) for p in prep.passages])
        batch.append((page, prep.passages, vecs.astype(np.float32), prep.tokens))
    with archive.writer():
        errors = archive.write_pages(batch)
        archive.refresh_derived()
    assert errors[0] is None and errors[2] is None and "already used" in str(errors[1])
    assert store.generation() == generation + 1  # one transaction for the batch
    assert sorted(i.source for i in store.issues()) == sorted(store.page_name(SEED_FILES[k]) for k in (0, 1, 3))
    for page, passages, _, _ in (batch[0], batch[2]):
        assert len(store.passages_by_id([p.id for p in passages])) == len(passages)  # whole pages
    assert store.counts()["issues"] == 3
    tokens = dict(store.conn.execute("SELECT term, id FROM terms").fetchall())
    assert set(batch[2][3][0]) <= set(tokens)  # the kept pages' terms are stored


def test_writer_lock_is_exclusive(url, tmp_path):
    one = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    two = Archive(tmp_path / "index", store=open_store(tmp_path / "index", url))
    with one.writer():
        with pytest.raises(IndexBusyError):
            with two.writer():
                pass
    with two.writer():  # released on exit
        pass


def test_a_bad_store_url_is_a_clear_error(tmp_path, monkeypatch):
    from qa.config import get_settings

    with pytest.raises(StoreError, match="postgresql://"):
        open_store(tmp_path / "i", "mysql://user:secret@host/db")
    with pytest.raises(StoreError, match="cannot use the PostgreSQL store") as err:
        open_store(tmp_path / "i", "postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value)
    for bad in ("mysql://u:secret@h/db", "postgresql://u:secret@127.0.0.1:1/db"):
        monkeypatch.setenv("QA_STORE_URL", bad)
        get_settings.cache_clear()
        try:
            for args in (["issues"], ["ingest", str(SEED_FILES[0])], ["migrate", "--to-index", str(tmp_path / "x")]):
                r = runner.invoke(app, [*args, "--index", str(tmp_path / "i")])
                assert r.exit_code == 1 and r.stderr.startswith("error: "), (args, r.output)
                assert "Traceback" not in r.output and "secret" not in r.output
        finally:
            get_settings.cache_clear()


# --- PostgreSQL only --------------------------------------------------------------------------

_HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from qa.index import Archive
    from qa.store import open_store
    archive = Archive(Path(sys.argv[1]), store=open_store(Path(sys.argv[1]), sys.argv[2]))
    with archive.writer():
        print("locked", flush=True)
        time.sleep(600)
""")


def test_the_postgres_writer_lock_holds_across_processes_and_folders_and_dies_with_its_holder(pg_db_url, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "machine-a"), pg_db_url],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        other = Archive(tmp_path / "machine-b", store=open_store(tmp_path / "machine-b", pg_db_url))
        with pytest.raises(IndexBusyError, match="another process is writing"):
            with other.writer():
                pass
        holder.kill()  # SIGKILL: no cleanup runs; the server frees the dead session's lock
        holder.wait(10)
        deadline = time.monotonic() + 20
        while True:
            try:
                with other.writer():
                    break
            except IndexBusyError:
                assert time.monotonic() < deadline, "the lock outlived its holder"
                time.sleep(0.2)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def _cli(*args: str):
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r


def test_the_whole_cli_on_postgresql(pg_db_url, tmp_path, monkeypatch):
    from qa.config import get_settings

    monkeypatch.setenv("QA_STORE_URL", pg_db_url)
    get_settings.cache_clear()
    index = str(tmp_path / "index")
    try:
        r = _cli("issues", "--index", index)
        assert r.exit_code == 1 and "no index at postgresql://postgres@" in r.stderr
        r = _cli("ingest", str(SEED_FILES[0]), str(SEED_FILES[1]), "--index", index, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["pages"] == 2
        assert not (tmp_path / "index" / "archive.sqlite3").exists()  # the rows are in PostgreSQL
        issues = json.loads(_cli("issues", "--json", "--index", index).stdout)
        assert sorted(i["id"] for i in issues) == sorted(p.stem for p in SEED_FILES[:2])
        shown = json.loads(_cli("show", issues[0]["id"], "--json", "--index", index).stdout)
        assert shown["articles"] and shown["articles"][0]["passages"]
        r = _cli("search", "跨境电子商务综合试验区", "--json", "--index", index)
        assert r.exit_code == 0 and json.loads(r.stdout)["results"][0]["citation"]["label"]
        r = _cli("ask", "衡阳日报报道了什么会议？", "--json", "--index", index)
        assert r.exit_code == 0 and json.loads(r.stdout)["citations"]
        r = _cli("remove", issues[0]["source"], "--index", index)
        assert r.exit_code == 0 and f"removed {issues[0]['source']}" in r.stdout
        left = json.loads(_cli("issues", "--json", "--index", index).stdout)
        assert [i["id"] for i in left] == [issues[1]["id"]]
        r = _cli("search", "跨境电子商务综合试验区", "--json", "--index", index)
        assert {h["chunk_id"].split(":")[0] for h in json.loads(r.stdout)["results"]} == {issues[1]["id"]}
    finally:
        get_settings.cache_clear()


def test_migrate_sqlite_to_postgresql_and_back_keeps_counts_and_search_results(
        seed_index, retriever, pg_db_url, tmp_path):
    source = tmp_path / "sqlite"
    shutil.copytree(seed_index, source)
    embedder = retriever.embedder
    before = (open_store(source, "").counts(), _listing(open_store(source, "")), _search(source, "", embedder))
    r = _cli("migrate", "--store-url", "", "--to-store-url", pg_db_url, "--to-index", str(tmp_path / "pg"),
             "--index", str(source), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["copied"]["passages"] == before[0]["passages"] and report["counts"] == before[0]
    pg = open_store(tmp_path / "pg", pg_db_url)
    assert (pg.counts(), _listing(pg), _search(tmp_path / "pg", pg_db_url, embedder)) == before
    assert pg.manifest()["embed_model"] == open_store(source, "").manifest()["embed_model"]
    again = _cli("migrate", "--store-url", "", "--to-store-url", pg_db_url, "--to-index", str(tmp_path / "pg"),
                 "--index", str(source))
    assert again.exit_code == 1 and "already holds 5 pages" in again.stderr
    r = _cli("migrate", "--store-url", pg_db_url, "--to-index", str(tmp_path / "back"), "--index",
             str(tmp_path / "pg"))
    assert r.exit_code == 0, r.output
    back = open_store(tmp_path / "back", "")
    assert (back.counts(), _listing(back), _search(tmp_path / "back", "", embedder)) == before
    assert back.vec_ids().tolist() == open_store(source, "").vec_ids().tolist()
    last_term = max(t for rows in pg.dump_rows("terms") for t, _ in rows)
    with pg.transaction() as tx:  # PostgreSQL's id sequences continue after the copied ids
        assert pg.term_ids(tx, ["一个新词"])["一个新词"] == last_term + 1


def test_every_api_route_answers_the_same_from_postgresql(seed_index, live_server, pg_db_url, tmp_path):
    import httpx

    from conftest import LiveServer

    r = _cli("migrate", "--store-url", "", "--to-store-url", pg_db_url, "--to-index", str(tmp_path / "pg"),
             "--index", str(seed_index))
    assert r.exit_code == 0, r.output
    server = LiveServer(tmp_path / "pg", env={"QA_STORE_URL": pg_db_url})
    try:
        pg = server.wait().url
        issues = httpx.get(f"{live_server}/api/issues", timeout=60).json()
        assert httpx.get(f"{pg}/api/issues", timeout=60).json() == issues
        issue_id = issues["issues"][0]["id"]
        calls = [("get", f"/api/issues/{issue_id}", None),
                 ("get", "/api/issues?date_from=2021-01-01&limit=2&offset=1", None),
                 ("get", "/api/issues?issue=18012", None),
                 ("post", "/api/search", {"query": "衡阳的云绩效、云督查平台是哪天投入运行的？", "top_k": 5}),
                 ("post", "/api/search", {"query": "习近平", "top_k": 10, "issue": "176001"}),
                 ("post", "/api/ask", {"question": "第18012号衡阳日报报道的全国先进制造业百强市榜单中，衡阳排在第几位？"}),
                 ("post", "/v1/chat/completions", {"model": "hengyang-qa", "messages": [
                     {"role": "user", "content": "衡阳获批设立的跨境电商综合试验区全称是什么？"}]})]
        for method, path, body in calls:
            a = httpx.request(method, f"{live_server}{path}", json=body, timeout=120)
            b = httpx.request(method, f"{pg}{path}", json=body, timeout=120)
            assert a.status_code == b.status_code == 200, (path, b.text[:300])
            ja, jb = a.json(), b.json()
            if path.startswith("/v1"):  # a completion's id and clock differ per response
                for j in (ja, jb):
                    del j["id"], j["created"]
            assert ja == jb, path
        hit = httpx.post(f"{pg}/api/search", json={"query": "习近平", "top_k": 1}, timeout=60).json()["results"][0]
        cited = httpx.get(f"{pg}/api/citations/{hit['chunk_id']}", timeout=60)
        assert cited.status_code == 200 and cited.json() == httpx.get(
            f"{live_server}/api/citations/{hit['chunk_id']}", timeout=60).json()
        assert httpx.get(f"{pg}/api/issues/nope", timeout=60).status_code == 404
        health = httpx.get(f"{pg}/health", timeout=60).json()
        assert health["issues"] == 5 and health["passages"] == httpx.get(f"{live_server}/health").json()["passages"]
    finally:
        server.stop()
