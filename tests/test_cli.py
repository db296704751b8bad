"""The `qa` command line, in-process (typer's runner) on the seed index."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qa.cli import app

from conftest import DEV, SEEDS

runner = CliRunner()


def run(*args: str, index=None):
    full = [*args, "--index", str(index)] if index else list(args)
    return runner.invoke(app, full, catch_exceptions=False)


def test_issues_json_lists_issues_with_articles(seed_index):
    r = run("issues", "--json", index=seed_index)
    assert r.exit_code == 0
    issues = json.loads(r.stdout)
    assert len(issues) == 5
    one = next(i for i in issues if i["issue"] == "18012")
    assert {"id", "paper", "date", "date_source", "issue", "page", "page_count", "source", "articles"} <= set(one)
    assert one["date"] == "2021-11-30" and one["date_source"] == "masthead" and one["page_count"] == 8
    assert all({"id", "headline", "byline", "passages"} <= set(a) for a in one["articles"])
    r = run("issues", "--json", "--from", "2021-01-01", "--to", "2021-12-31", "--limit", "1", "--offset", "1",
            index=seed_index)
    assert [i["date"] for i in json.loads(r.stdout)] == ["2021-11-30"]  # the second of 2021's two


def test_show_json_gives_passages_with_spans(seed_index):
    issues = json.loads(run("issues", "--json", index=seed_index).stdout)
    r = run("show", issues[0]["id"], "--json", index=seed_index)
    assert r.exit_code == 0
    detail = json.loads(r.stdout)
    p = detail["articles"][0]["passages"][0]
    assert set(p) == {"id", "text", "start", "end"} and p["end"] > p["start"]


def test_show_unknown_issue_fails_clearly(seed_index):
    r = runner.invoke(app, ["show", "nope", "--index", str(seed_index)])
    assert r.exit_code == 1 and "no issue 'nope'" in r.stderr


def test_index_dir_from_the_environment(seed_index, monkeypatch):
    from qa.config import get_settings

    monkeypatch.setenv("QA_INDEX_DIR", str(seed_index))
    get_settings.cache_clear()
    try:
        r = run("issues", "--json")
        assert r.exit_code == 0 and len(json.loads(r.stdout)) == 5
    finally:
        get_settings.cache_clear()


def test_a_port_out_of_range_or_a_bad_setting_is_a_usage_error(tmp_path, monkeypatch):
    from qa.config import get_settings

    for port in ("0", "99999"):  # 99999 would listen on 34463 (the port modulo 65536), 0 on 8000
        r = runner.invoke(app, ["serve", "--port", port, "--index", str(tmp_path / "none")])
        assert r.exit_code == 2 and "--port" in r.stderr
    monkeypatch.setenv("QA_PORT", "99999")
    get_settings.cache_clear()
    try:
        r = runner.invoke(app, ["issues", "--index", str(tmp_path / "none")])
        assert r.exit_code == 2 and "QA_PORT='99999'" in r.stderr and "Traceback" not in r.output
    finally:
        get_settings.cache_clear()


def test_search_json_matches_the_api_shape(seed_index):
    r = run("search", "衡阳获批设立的跨境电商综合试验区全称是什么？", "--top-k", "3", "--json", index=seed_index)
    assert r.exit_code == 0
    body = json.loads(r.stdout)
    assert len(body["results"]) == 3 and "跨境电子商务综合试验区" in body["results"][0]["text"]
    assert body["results"][0]["citation"]["label"]


def test_ask_prints_answer_and_labels(seed_index):
    r = run("ask", "习近平同安哥拉总统洛伦索通电话时，说中方近期会派什么去安哥拉？", index=seed_index)
    assert r.exit_code == 0
    assert "抗疫医疗专家组" in r.stdout and "[1] 《衡阳日报》2020年9月26日 第176001号" in r.stdout


def test_eval_json_reports_metrics_per_kind(seed_index):
    r = run("eval", str(DEV), "--json", index=seed_index)
    assert r.exit_code == 0
    report = json.loads(r.stdout)
    assert set(report["retrieval"]["by_kind"]) == {"overall", "dated", "factoid", "paraphrase", "summary"}
    assert report["answers"]["unanswerable"]["n"] == 6


def test_ingest_with_a_failed_file_exits_1_and_keeps_the_good_ones(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "good.txt").write_text((SEEDS / "003_f6f5db6d93bde6b2.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (pages / "bad.txt").write_bytes(b"\x00\x01\x02" * 100)
    (pages / "page.html").write_text("<p>衡阳</p>", encoding="utf-8")
    (pages / "page_noext").write_text("衡阳", encoding="utf-8")
    r = runner.invoke(app, ["ingest", str(pages), "--index", str(tmp_path / "index")])
    assert r.exit_code == 1 and "bad.txt" in r.stderr
    assert r.stderr.count("bad.txt") == 1, r.stderr  # the path once, then the reason
    assert "1 failed, 2 skipped" in r.stdout
    for name in ("page.html", "page_noext"):
        assert f"skipped: {pages / name}" in r.stderr
    again = runner.invoke(app, ["ingest", str(pages), "--index", str(tmp_path / "index"), "--json"])
    report = json.loads(again.stdout)
    assert report["unchanged"] == 1
    assert [s["file"] for s in report["skipped"]] == [str(pages / "page.html"), str(pages / "page_noext")]
    assert {s["reason"] for s in report["skipped"]} == {"not a page: pages end .txt, .text or .md"}
    issues = json.loads(run("issues", "--json", index=tmp_path / "index").stdout)
    assert [i["source"] for i in issues] == ["pages/good.txt"]  # named below the pages root (the index's parent)


def test_ingest_of_a_copy_of_a_stored_page_skips_it_and_names_the_page(tmp_path):
    original, copy = tmp_path / "main" / "003.txt", tmp_path / "checkout" / "003.txt"
    for path in (original, copy):  # a second checkout: the same page at another path
        path.parent.mkdir()
        path.write_bytes((SEEDS / "003_f6f5db6d93bde6b2.txt").read_bytes())
    index = tmp_path / "index"
    assert runner.invoke(app, ["ingest", str(original), "--index", str(index)]).exit_code == 0
    r = runner.invoke(app, ["ingest", str(copy), "--index", str(index)])
    assert r.exit_code == 0 and "0 pages ingested" in r.stdout and "1 skipped" in r.stdout
    assert f"skipped: {copy}: same contents as 003 ({original})" in r.stderr
    assert [i["source"] for i in json.loads(run("issues", "--json", index=index).stdout)] == ["main/003.txt"]


def test_a_named_sidecar_is_never_read_as_a_page(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "hy_p3.txt").write_bytes((SEEDS / "002_2cbcf802db6e83b8.txt").read_bytes())  # no masthead
    sidecar = pages / "hy_p3.txt.meta.json"
    sidecar.write_text('{"date": "2022-12-15", "issue": "18390", "page": 3}', encoding="utf-8")
    index = tmp_path / "index"
    alone = runner.invoke(app, ["ingest", str(sidecar), "--index", str(index)])
    assert alone.exit_code == 0 and "0 pages ingested" in alone.stdout and "1 skipped" in alone.stdout
    assert f"skipped: {sidecar}: a sidecar" in alone.stderr
    assert json.loads(run("issues", "--json", index=index).stdout) == []
    # `qa ingest pages/*`: the sidecar beside its page is that page's metadata, nothing more
    both = runner.invoke(app, ["ingest", str(pages / "hy_p3.txt"), str(sidecar), "--index", str(index), "--json"])
    assert both.exit_code == 0
    report = json.loads(both.stdout)
    assert (report["pages"], report["skipped"], report["failures"]) == (1, [], [])
    (page,) = json.loads(run("issues", "--json", index=index).stdout)
    assert page["source"] == "pages/hy_p3.txt" and (page["date"], page["page"]) == ("2022-12-15", 3)


@pytest.mark.parametrize("args", [["search", "  "], ["ask", ""]])
def test_empty_question_is_an_error(seed_index, args):
    r = runner.invoke(app, [*args, "--index", str(seed_index)])
    assert r.exit_code == 2 and "empty" in r.stderr  # a usage error, as README says


def test_missing_index_is_an_error(tmp_path):
    r = runner.invoke(app, ["issues", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "qa ingest" in r.stderr


# -- checks that need no model: they answer at once, and change nothing -------------------------------
@pytest.mark.parametrize("args, message", [
    (["--from", "2021/01/01"], "YYYY-MM-DD"),
    (["--to", "2021-13-45"], "not a date in the calendar"),
    (["--issue", "abc"], "issue numbers are digits"),
    (["--top-k", "0"], "--top-k"),
    (["--top-k", "51"], "--top-k"),
])
def test_search_filters_are_validated_like_the_api(tmp_path, args, message):
    r = runner.invoke(app, ["search", "百强市", *args, "--index", str(tmp_path / "none")])
    assert r.exit_code == 2 and message in r.stderr


def test_a_reversed_date_range_is_an_error(tmp_path):
    for command in ("search", "ask"):
        r = runner.invoke(app, [command, "衡阳", "--from", "2021-12-01", "--to", "2021-11-01",
                                "--index", str(tmp_path / "none")])
        assert r.exit_code == 2 and "reversed" in r.stderr


def test_ingest_of_a_missing_path_fails_before_anything_is_created(tmp_path):
    r = runner.invoke(app, ["ingest", str(tmp_path / "does-not-exist"), "--index", str(tmp_path / "index")])
    assert r.exit_code == 1 and "no such file or folder" in r.stderr
    assert not (tmp_path / "index").exists()


def test_ingest_of_a_folder_without_pages_says_so_before_anything_is_created(tmp_path, monkeypatch):
    import qa.ingest

    monkeypatch.setattr(qa.ingest, "load_ingest_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    empty, others = tmp_path / "empty", tmp_path / "others"
    empty.mkdir()
    (others / "sub").mkdir(parents=True)
    (others / "sub" / "page.html").write_text("<p>衡阳</p>", encoding="utf-8")
    (others / "01.txt.meta.json").write_text('{"page": 1}', encoding="utf-8")
    for folder in (empty, others):
        r = runner.invoke(app, ["ingest", str(folder), "--index", str(tmp_path / "index")])
        assert r.exit_code == 1 and f"no pages found in {folder}" in r.stderr and ".txt" in r.stderr
    assert not (tmp_path / "index").exists()


def test_an_empty_folder_among_others_is_noted_and_the_pages_go_in(tmp_path):
    # `qa ingest pages/*` where one day's folder is still empty
    (tmp_path / "pages" / "empty").mkdir(parents=True)
    (tmp_path / "pages" / "day").mkdir()
    (tmp_path / "pages" / "day" / "01.txt").write_text("衡阳港口物流园开工\n本报讯 衡阳港口物流园正式开工建设。\n",
                                                       encoding="utf-8")
    folders = [str(tmp_path / "pages" / "empty"), str(tmp_path / "pages" / "day")]
    r = runner.invoke(app, ["ingest", *folders, "--index", str(tmp_path / "index")])
    assert r.exit_code == 0 and r.stdout.startswith("1 pages ingested"), r.output
    assert f"no pages found in {folders[0]}" in r.stderr


def test_ingest_into_a_busy_index_fails_before_the_model_loads(fresh_index, monkeypatch):
    import qa.ingest
    from qa.index import Archive

    monkeypatch.setattr(qa.ingest, "load_ingest_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    with Archive(fresh_index).writer():
        r = runner.invoke(app, ["ingest", str(SEEDS), "--index", str(fresh_index)])
    assert r.exit_code == 1 and "another process is writing" in r.stderr


def test_search_on_an_index_without_pages_says_how_to_add_them(tmp_path):
    from qa.store import Store

    Store.open(tmp_path / "empty")
    for command in ("search", "ask"):
        r = runner.invoke(app, [command, "衡阳", "--index", str(tmp_path / "empty")])
        assert r.exit_code == 1 and "no pages yet" in r.stderr and "qa ingest" in r.stderr


def test_serve_refuses_a_missing_non_default_index(tmp_path):
    r = runner.invoke(app, ["serve", "--index", str(tmp_path / "typo"), "--port", "1"])
    assert r.exit_code == 1 and f"qa ingest PAGES --index {tmp_path / 'typo'}" in r.stderr
    assert "--seed" in r.stderr and not (tmp_path / "typo").exists()


def test_serve_reports_a_busy_port_before_loading(seed_index):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = runner.invoke(app, ["serve", "--index", str(seed_index), "--port", str(port)])
    assert r.exit_code == 1 and f"127.0.0.1:{port}" in r.stderr
    assert "--port" in r.stderr and "QA_PORT" in r.stderr


def test_help_shows_the_citation_markers():
    r = runner.invoke(app, ["ask", "--help"], terminal_width=200)
    assert "[n] markers" in r.stdout


# -- --url: a running server instead of a model in this process -------------------------------------
def test_search_and_ask_through_a_running_server(live_server, monkeypatch):
    import qa.embed

    monkeypatch.setattr(qa.embed, "load_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    q = "衡阳获批设立的跨境电商综合试验区全称是什么？"
    r = runner.invoke(app, ["search", q, "--top-k", "3", "--json", "--url", live_server])
    assert r.exit_code == 0 and "跨境电子商务综合试验区" in json.loads(r.stdout)["results"][0]["text"]
    monkeypatch.setenv("QA_URL", live_server)
    r = runner.invoke(app, ["ask", "习近平同安哥拉总统洛伦索通电话时，说中方近期会派什么去安哥拉？"])
    assert r.exit_code == 0 and "抗疫医疗专家组" in r.stdout and "[1] 《衡阳日报》2020年9月26日" in r.stdout


def test_eval_through_a_running_server(live_server, tmp_path):
    lines = [line for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()][:3]
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = runner.invoke(app, ["eval", str(small), "--json", "--url", live_server])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["retrieval"]["overall"]["n"] >= 1
    # the server sends no confidences: no trade-off table made of zeros, and the text says why
    assert report["answers"]["tradeoff"] == []
    r = runner.invoke(app, ["eval", str(small), "--url", live_server])
    assert r.exit_code == 0 and "run without --url" in r.stdout


def test_url_of_a_server_that_is_not_there_is_a_clear_error():
    r = runner.invoke(app, ["search", "衡阳", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot reach the server" in r.stderr


@pytest.mark.parametrize("cores, memory_gib, expected", [(2, 24, 1), (16, 128, 4), (64, 512, 8), (16, 4, 2)])
def test_serve_starts_one_process_per_four_cores_within_memory(monkeypatch, cores, memory_gib, expected):
    """`qa serve` with no --workers (what `make serve` starts): one process per 4 cores, at
    most 8 and one per 2 GiB of memory; a small machine keeps one process."""
    import os

    from qa.config import Settings, serve_workers

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": memory_gib * 2**30 // 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert serve_workers(Settings()) == expected


def test_serve_workers_setting_wins_and_milvus_lite_keeps_one_process(monkeypatch):
    import os

    from qa.config import Settings, serve_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert serve_workers(Settings(workers=3)) == 3
    # Milvus Lite locks its folder: a second process could not open it
    assert serve_workers(Settings(search_backend="milvus", milvus_uri="milvus.db")) == 1
    assert serve_workers(Settings(search_backend="milvus", milvus_uri="http://127.0.0.1:19530")) == 8
    with pytest.raises(ValueError):
        Settings(workers=0)
