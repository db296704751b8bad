"""The archive on disk: ingest, re-ingest, replace, remove, model mismatch, search files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from qa.chunk import strip_markup
from qa.index import Archive
from qa.ingest import ingest_paths
from qa.lookup import issue_detail, issue_list
from qa.store import IndexMismatchError, Store

from conftest import SEEDS


def _ws(s: str) -> str:
    return re.sub(r"\s+", "", s)


def test_seed_index_lists_five_issues_with_right_dates_and_numbers(seed_index):
    issues = {Path(i["source"]).name[:3]: i for i in issue_list(Store.open(seed_index))}
    assert set(issues) == {"000", "001", "002", "003", "004"}
    assert (issues["000"]["date"], issues["000"]["issue"]) == ("2021-11-30", "18012")
    assert (issues["001"]["date"], issues["001"]["issue"]) == ("2023-12-21", "18730")
    assert (issues["003"]["date"], issues["003"]["issue"]) == ("2020-09-26", "176001")  # as printed
    for key in ("002", "004"):  # no masthead: the date is inferred from the text, never printed
        assert issues[key]["date_source"] == "inferred" and issues[key]["issue"] is None
    for issue in issues.values():
        headlined = [a for a in issue["articles"] if a["headline"]]
        assert len(headlined) >= 5, issue["source"]
        assert all(a["passages"] >= 1 for a in headlined)


def test_every_stored_passage_matches_its_span_in_the_source(seed_index):
    store = Store.open(seed_index)
    for issue in store.issues():
        source = store.issue_text(issue.id)
        detail = issue_detail(store, issue.id)
        for article in detail["articles"]:
            for p in article["passages"]:
                assert len(p["text"]) <= 500
                assert _ws(p["text"]) == _ws(strip_markup(source[p["start"]:p["end"]]))  # '## ' marks


def test_reingesting_the_same_files_changes_nothing(fresh_index):
    store = Store.open(fresh_index)
    before = (store.counts(), store.generation(), [p["id"] for p in _all_passages(store)])
    report = ingest_paths([SEEDS], fresh_index, progress=False)
    assert report.pages == 0 and report.unchanged == 5
    assert (store.counts(), store.generation(), [p["id"] for p in _all_passages(store)]) == before


def test_changed_page_replaces_its_old_version(fresh_index, tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    page = pages / "000_72e2c7496de26bfa.txt"
    text = (SEEDS / page.name).read_text(encoding="utf-8").replace("衡阳在该榜单中位列第88位", "第77位")
    page.write_text(text, encoding="utf-8")
    store = Store.open(fresh_index)
    assert ingest_paths([page], fresh_index, progress=False).pages == 1  # another file: another page
    counts = store.counts()
    page.write_text(text.replace("第77位", "衡阳在该榜单中位列第99位"), encoding="utf-8")
    report = ingest_paths([page], fresh_index, progress=False)
    assert report.pages == 1
    assert store.counts()["issues"] == counts["issues"]
    mine = store.resolve_page(str(page))
    texts = " ".join(p["text"] for a in issue_detail(store, mine)["articles"] for p in a["passages"])
    assert "第99位" in texts and "第77位" not in texts
    # and the search files follow: the new wording is found, the old one is gone
    archive = Archive(fresh_index)
    assert archive.is_current()
    snap = archive.snapshot()
    assert snap.size == store.counts()["passages"]


def test_remove_takes_a_page_and_its_passages_out(fresh_index):
    from qa.ingest import remove_sources

    store = Store.open(fresh_index)
    n_before = store.counts()
    gone = store.issues()[0]
    missing = remove_sources([gone.source], fresh_index)
    assert missing == []
    after = store.counts()
    assert after["issues"] == n_before["issues"] - 1 and after["passages"] < n_before["passages"]
    snap = Archive(fresh_index).snapshot()
    assert snap.size == after["passages"]
    assert not any(pid.startswith(gone.id + ":") for pid in snap.ids)
    assert remove_sources(["no-such-page.txt"], fresh_index) == ["no-such-page.txt"]


def test_bad_files_are_reported_and_the_good_ones_go_in(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    shutil.copy(SEEDS / "004_88725a97d360d681.txt", pages)
    (pages / "empty.txt").write_bytes(b"")
    (pages / "binary.txt").write_bytes(bytes(range(256)) * 40)
    report = ingest_paths([pages], tmp_path / "index", progress=False)
    assert report.pages == 1
    failed = {f.split("/")[-1] for f, _ in report.failures}
    assert failed == {"empty.txt", "binary.txt"}
    assert all(name in reason for (f, reason) in report.failures for name in [f.split("/")[-1]])


def test_index_built_with_another_model_is_a_clear_error(fresh_index):
    store = Store.open(fresh_index)
    with pytest.raises(IndexMismatchError) as err:
        store.check_embedder("some/other-model", 768)
    message = str(err.value)
    assert "some/other-model" in message and store.manifest()["embed_model"] in message
    assert "qa ingest --rebuild" in message


def test_search_files_lagging_behind_the_store_are_rebuilt(fresh_index):
    """A crash between the SQLite commit and publishing the search files is repaired on open."""
    archive = Archive(fresh_index)
    with archive.store.transaction() as tx:
        archive.store.bump_generation(tx)
    assert not archive.is_current()
    snap = Archive(fresh_index).snapshot()
    assert snap.generation == archive.store.generation()
    assert snap.size == archive.store.counts()["passages"]


def _all_passages(store: Store) -> list[dict]:
    out = []
    for issue in store.issues():
        for a in issue_detail(store, issue.id)["articles"]:
            out.extend(a["passages"])
    return out


def test_same_file_name_in_two_folders_is_two_pages(tmp_path):
    pages = tmp_path / "pages"
    for year, seed in (("2021", "000_72e2c7496de26bfa.txt"), ("2023", "001_f6fea3e315053468.txt")):
        (pages / year).mkdir(parents=True)
        shutil.copy(SEEDS / seed, pages / year / "p01.txt")
    report = ingest_paths([pages], tmp_path / "index", progress=False)
    assert report.pages == 2 and not report.failures
    issues = issue_list(Store.open(tmp_path / "index"))
    assert sorted((i["source"], i["date"]) for i in issues) == [("pages/2021/p01.txt", "2021-11-30"),
                                                               ("pages/2023/p01.txt", "2023-12-21")]
    again = ingest_paths([pages], tmp_path / "index", progress=False)
    assert again.pages == 0 and again.unchanged == 2  # no flip-flopping between the two


def test_a_new_or_changed_sidecar_reingests_the_page(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    shutil.copy(SEEDS / "002_2cbcf802db6e83b8.txt", pages)
    index = tmp_path / "index"
    ingest_paths([pages], index, progress=False)
    sidecar = pages / "002_2cbcf802db6e83b8.txt.meta.json"
    sidecar.write_text(json.dumps({"paper": "衡阳日报", "date": "2022-12-15", "issue": "18390", "page": 1}))
    report = ingest_paths([pages], index, progress=False)
    assert report.pages == 1
    (issue,) = issue_list(Store.open(index))
    assert (issue["date"], issue["date_source"], issue["issue"]) == ("2022-12-15", "sidecar", "18390")
