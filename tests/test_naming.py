"""Page names: one name per page file however it is ingested, no silent replacement, no duplicate,
and indexes written by the older naming keep working (migrated in place)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from qa.chunk import chunk_page
from qa.embed import load_embedder
from qa.index import Archive
from qa.ingest import ingest_paths, lexical_tokens, remove_sources
from qa.parse import parse_page
from qa.store import FORMAT_VERSION, Store

pytestmark = pytest.mark.slow  # each test ingests real pages with the real model

# Two different pages that share a file name, as a daily archive by year folders has them.
PAGE_2021 = "衡阳港口物流园开工\n本报讯 2021年衡阳港口物流园正式开工建设，总投资十二亿元。\n"
PAGE_2022 = "衡阳南岳机场新航线开通\n本报讯 2022年衡阳南岳机场开通飞往昆明的新航线，每周三班。\n"


@pytest.fixture
def years(tmp_path) -> Path:
    for year, text in (("2021", PAGE_2021), ("2022", PAGE_2022)):
        (tmp_path / "years" / year).mkdir(parents=True)
        (tmp_path / "years" / year / "01.txt").write_text(text, encoding="utf-8")
    return tmp_path / "years"


def _pages(index: Path) -> list[tuple[str, str]]:
    return sorted((i.source, i.id) for i in Store.open(index).issues())


def _consistent(index: Path) -> Store:
    archive = Archive(index)
    snap = archive.snapshot()
    assert snap.size == archive.store.counts()["passages"]
    return archive.store


def test_folder_by_folder_then_the_parent_then_one_file_keeps_each_page_once(years, tmp_path, monkeypatch):
    index = tmp_path / "index"
    assert ingest_paths([years / "2021"], index, progress=False).pages == 1
    assert ingest_paths([years / "2022"], index, progress=False).pages == 1  # not a replacement
    pages = _pages(index)
    assert [s for s, _ in pages] == ["years/2021/01.txt", "years/2022/01.txt"]
    assert pages[0][1] == "01" and pages[1][1].startswith("01-")  # unique, path-safe ids
    again = ingest_paths([years], index, progress=False)
    assert (again.pages, again.unchanged) == (0, 2)
    monkeypatch.chdir(years / "2022")  # another working directory, a single file
    single = ingest_paths([Path("01.txt")], index, progress=False)
    assert (single.pages, single.unchanged) == (0, 1)
    assert _pages(index) == pages
    texts = {p.text for i in _consistent(index).issues() for a in Store.open(index).articles(i.id)
             for p in Store.open(index).passages_of_article(a.id)}
    assert any("港口物流园" in t for t in texts) and any("南岳机场" in t for t in texts)


def test_parent_first_then_a_year_folder_changes_nothing(years, tmp_path):
    index = tmp_path / "index"
    assert ingest_paths([years], index, progress=False).pages == 2
    store = Store.open(index)
    generation = store.generation()
    report = ingest_paths([years / "2021", years / "2021" / "01.txt"], index, progress=False)
    assert (report.pages, report.unchanged) == (0, 1)  # the same file given twice is one page
    assert store.generation() == generation and len(_pages(index)) == 2


def test_remove_takes_the_listed_name_the_issue_id_or_the_file_path(years, tmp_path, monkeypatch):
    index = tmp_path / "index"
    ingest_paths([years], index, progress=False)
    (first, first_id), (second, second_id) = _pages(index)
    assert remove_sources([first], index) == []
    assert remove_sources([second_id], index) == []
    assert _pages(index) == []
    ingest_paths([years], index, progress=False)
    monkeypatch.chdir(years)
    assert remove_sources(["2021/01.txt", "no/such.txt"], index) == ["no/such.txt"]
    assert [s for s, _ in _pages(index)] == ["years/2022/01.txt"]
    _consistent(index)


def test_a_moved_folder_renames_its_pages_instead_of_duplicating_them(years, tmp_path):
    index = tmp_path / "index"
    ingest_paths([years], index, progress=False)
    ids = [i for _, i in _pages(index)]
    years.rename(tmp_path / "archive")
    report = ingest_paths([tmp_path / "archive"], index, progress=False)
    assert (report.pages, report.unchanged) == (0, 2)
    assert _pages(index) == sorted(zip(["archive/2021/01.txt", "archive/2022/01.txt"], ids))


def test_identical_files_are_one_page_in_one_run_and_across_runs(years, tmp_path):
    index = tmp_path / "index"
    copy = years / "2021" / "copy.txt"
    copy.write_bytes((years / "2021" / "01.txt").read_bytes())  # beside its original: one batch
    report = ingest_paths([years], index, progress=False)
    assert (report.pages, report.failures) == (2, [])
    (original_id,) = [i for s, i in _pages(index) if s == "years/2021/01.txt"]
    assert report.skipped == [(str(copy), f"same contents as {original_id} ({years / '2021' / '01.txt'})")]
    again = ingest_paths([years], index, progress=False)
    assert (again.pages, again.unchanged, [f for f, _ in again.skipped]) == (0, 2, [str(copy)])
    elsewhere = tmp_path / "checkout" / "01.txt"  # a second checkout: another path, the original kept
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(copy.read_bytes())
    assert [f for f, _ in ingest_paths([elsewhere], index, progress=False).skipped] == [str(elsewhere)]
    assert [s for s, _ in _pages(index)] == ["years/2021/01.txt", "years/2022/01.txt"]
    _consistent(index)


def test_the_same_text_on_pages_of_other_days_is_two_pages(tmp_path):
    # a recurring full-page advertisement: one text, two pages its file names date apart
    for day in ("2021-11-30", "2021-12-01"):
        (tmp_path / "pages" / f"hy_{day}_p8.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "pages" / f"hy_{day}_p8.txt").write_text(PAGE_2021, encoding="utf-8")
    report = ingest_paths([tmp_path / "pages"], tmp_path / "index", progress=False)
    assert (report.pages, report.skipped) == (2, [])
    assert sorted(i.date for i in Store.open(tmp_path / "index").issues()) == ["2021-11-30", "2021-12-01"]


def test_a_moved_page_and_its_copy_keep_the_page_once(years, tmp_path):
    index = tmp_path / "index"
    ingest_paths([years], index, progress=False)
    ids = dict(_pages(index))
    (years / "2021" / "01.txt").rename(years / "2021" / "a.txt")
    (years / "2021" / "b.txt").write_bytes((years / "2021" / "a.txt").read_bytes())
    report = ingest_paths([years], index, progress=False)
    assert (report.pages, report.unchanged, [f for f, _ in report.skipped]) == (0, 2, [str(years / "2021" / "b.txt")])
    assert dict(_pages(index)) == {"years/2021/a.txt": ids["years/2021/01.txt"],  # renamed, same id
                                   "years/2022/01.txt": ids["years/2022/01.txt"]}


def test_a_copy_of_what_a_page_held_before_it_changed_is_a_page_of_its_own(years, tmp_path):
    index = tmp_path / "index"
    ingest_paths([years / "2021"], index, progress=False)
    page = years / "2021" / "01.txt"
    (years / "2021" / "00.txt").write_bytes(page.read_bytes())  # the old contents, read first
    page.write_text(PAGE_2021.replace("十二亿元", "十五亿元"), encoding="utf-8")
    report = ingest_paths([years / "2021"], index, progress=False)
    assert (report.pages, report.skipped) == (2, [])  # both kept: neither version is lost
    texts = [Store.open(index).issue_text(i) for _, i in _pages(index)]
    assert any("十二亿元" in t for t in texts) and any("十五亿元" in t for t in texts)


# -- indexes written by format 1 (pages named by their path below the folder given) -------------

_FORMAT_1 = """
CREATE TABLE manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE issues (
    id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE, checksum TEXT NOT NULL, encoding TEXT NOT NULL,
    paper TEXT, date TEXT, date_source TEXT, weekday TEXT, issue_no TEXT, page INTEGER,
    page_count INTEGER, text TEXT NOT NULL);
CREATE TABLE articles (
    id TEXT PRIMARY KEY, issue_id TEXT NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, headline TEXT, kicker TEXT, subtitle TEXT, byline TEXT, dateline TEXT,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, continuations TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE passages (
    id TEXT PRIMARY KEY, vec_id INTEGER NOT NULL UNIQUE,
    issue_id TEXT NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    tokens TEXT NOT NULL, embedding BLOB NOT NULL);
"""


def _format_1_index(index: Path, pages: dict[str, Path]) -> None:
    """An index as the format-1 code wrote it: `pages` maps each page's old name to its file."""
    index.mkdir(parents=True)
    embedder = load_embedder()
    db = sqlite3.connect(index / "archive.sqlite3")
    db.executescript(_FORMAT_1)
    db.executemany("INSERT INTO manifest VALUES (?, ?)", [
        ("format_version", "1"), ("generation", str(len(pages))),
        ("embed_model", embedder.model_id), ("embed_dim", str(embedder.dim))])
    for name, path in pages.items():
        page = parse_page(path, name)
        i = page.issue
        db.execute("INSERT INTO issues VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (i.id, name, i.checksum, i.encoding, i.paper, i.date, i.date_source, i.weekday,
                    i.issue_no, i.page, i.page_count, page.text))
        for a in page.articles:
            db.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (f"{i.id}:a{a.index:03d}", i.id, a.index, a.headline, a.kicker, a.subtitle, a.byline,
                        a.dateline, a.start, a.end, json.dumps(a.continuations), a.text))
        passages = chunk_page(page)
        vectors = embedder.embed_passages([p.text for p in passages]).astype(np.float32)
        for p, v in zip(passages, vectors):
            vec_id = int.from_bytes(hashlib.sha1(p.id.encode()).digest()[:8], "big") >> 1
            db.execute("INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (p.id, vec_id, i.id, f"{i.id}:a{p.article_index:03d}", p.ordinal, p.text, p.start,
                        p.end, " ".join(lexical_tokens(p)), v.tobytes()))
    db.commit()
    db.close()


def test_a_format_1_index_is_migrated_in_place_and_its_pages_keep_their_names(years, tmp_path):
    index = tmp_path / "index"
    _format_1_index(index, {"01.txt": years / "2022" / "01.txt"})  # as `qa ingest years/2022` named it
    store = Store.open(index)
    assert store.manifest()["format_version"] == FORMAT_VERSION
    assert _pages(index) == [("01.txt", "01")]
    _consistent(index)  # the search files are rebuilt for the new format, never re-embedded
    # The same file under its new name is recognized by its checksum: renamed, not duplicated.
    report = ingest_paths([years / "2022"], index, progress=False)
    assert (report.pages, report.unchanged) == (0, 1)
    assert _pages(index) == [("years/2022/01.txt", "01")]
    # A different file that the old naming also called 01.txt is a new page with its own id.
    assert ingest_paths([years / "2021"], index, progress=False).pages == 1
    assert len(_pages(index)) == 2
    _consistent(index)


def test_a_file_that_may_be_an_old_page_changed_is_refused_naming_both(years, tmp_path):
    index = tmp_path / "index"
    old = tmp_path / "old" / "01.txt"  # what `qa ingest years` once stored as 2021/01.txt
    old.parent.mkdir()
    old.write_text(PAGE_2021.replace("十二亿元", "十亿元"), encoding="utf-8")
    _format_1_index(index, {"2021/01.txt": old})
    report = ingest_paths([years], index, progress=False)
    (failed, reason), = report.failures
    assert failed.endswith("2021/01.txt") and "years/2021/01.txt" in reason and "'2021/01.txt'" in reason
    assert "qa remove 2021/01.txt" in reason
    # nothing replaced: the old page is still there, the other file went in
    assert [s for s, _ in _pages(index)] == ["2021/01.txt", "years/2022/01.txt"]
    assert remove_sources(["2021/01.txt"], index) == []
    assert ingest_paths([years], index, progress=False).pages == 1
    assert [s for s, _ in _pages(index)] == ["years/2021/01.txt", "years/2022/01.txt"]
    _consistent(index)
