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
    r = runner.invoke(app, ["ingest", str(pages), "--index", str(tmp_path / "index")])
    assert r.exit_code == 1 and "bad.txt" in r.stderr
    issues = json.loads(run("issues", "--json", index=tmp_path / "index").stdout)
    assert [i["source"] for i in issues] == ["good.txt"]


@pytest.mark.parametrize("args", [["search", "  "], ["ask", ""]])
def test_empty_question_is_an_error(seed_index, args):
    r = runner.invoke(app, [*args, "--index", str(seed_index)])
    assert r.exit_code == 1 and "empty" in r.stderr


def test_missing_index_is_an_error(tmp_path):
    r = runner.invoke(app, ["issues", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "qa ingest" in r.stderr
