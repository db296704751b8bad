"""Hybrid retrieval: quality floors on eval/dev.jsonl, filters, citations."""

from __future__ import annotations

import pytest

from qa.evaluate import contains_evidence, evaluate_retrieval, load_questions

from conftest import DEV


@pytest.fixture(scope="module")
def report(retriever):
    return evaluate_retrieval(load_questions(DEV), retriever, top_k=5)


def test_retrieval_quality_floors(report):
    overall = report["overall"]
    assert overall["n"] == 34
    assert overall["recall@5"] >= 0.97, report
    assert overall["recall@1"] >= 0.80, report
    assert overall["mrr@10"] >= 0.85, report


def test_citation_carries_issue_metadata(retriever):
    hits = retriever.search("衡阳在全国先进制造业百强市榜单中排第几位？", top_k=5)
    top = hits[0]
    assert contains_evidence(top.text, ["衡阳在该榜单中位列第88位"])
    c = top.citation
    assert (c.paper, c.date, c.issue, c.page) == ("衡阳日报", "2021-11-30", "18012", 1)
    assert c.label.startswith("《衡阳日报》2021年11月30日 第18012号 第1版《")
    assert len(top.text) <= 500


def test_unknown_metadata_is_left_out_of_the_label(retriever):
    hits = retriever.search("祁东县人大代表票决民生实事项目", top_k=3)
    # 002 has no masthead: no paper, no issue number, no page; its date is inferred and says so.
    unprinted = [h for h in hits if h.citation.date_source == "inferred"]
    assert unprinted, [h.citation.label for h in hits]
    for h in unprinted:
        assert h.citation.issue is None and "None" not in h.citation.label and "号" not in h.citation.label.split("《")[0]
        assert h.citation.label.startswith("2022年12月14日（推断）") and h.citation.date_evidence


def test_issue_number_in_the_question_filters(retriever):
    hits = retriever.search("第18730号衡阳日报报道了哪些会议？", top_k=10)
    assert hits and all(h.citation.issue == "18730" for h in hits)


def test_request_date_range_filters(retriever):
    hits = retriever.search("习近平通电话", top_k=10, date_from="2020-01-01", date_to="2020-12-31")
    assert hits and all(h.citation.date.startswith("2020") for h in hits)
    assert retriever.search("习近平通电话", top_k=5, date_from="1990-01-01", date_to="1990-12-31") == []


def test_the_callers_filters_hold_and_the_questions_own_give_way(retriever):
    from qa.understand import understand

    q = understand("第99999号衡阳日报报道了什么？")
    hits, dropped = retriever.search_scoped(q, top_k=3)
    assert dropped == ("issue",) and hits
    assert retriever.search(q, top_k=3, issue="99999") == []  # given by the caller: never dropped
    dated = understand("2020年9月26日衡阳日报第18012号报道了什么？")  # 18012 is of 2021-11-30
    assert retriever.search_scoped(dated)[1] == ("issue",)  # the days match a page; the issue is left out
    assert {h.citation.date for h in retriever.search(dated, top_k=5)} == {"2020-09-26"}
    # the caller's issue with the question's days that match none of it: the days give way
    assert retriever.search_scoped(dated, issue="18012")[1] == ("days",)
    assert {h.citation.issue for h in retriever.search(dated, top_k=5, issue="18012")} == {"18012"}
    # the caller's days with the question's issue: the issue gives way
    hits = retriever.search(q, top_k=5, date_from="2021-01-01", date_to="2021-12-31")
    assert hits and all(h.citation.date.startswith("2021") for h in hits)


def test_a_date_in_the_question_that_no_issue_has_does_not_empty_the_results(retriever):
    # 11月10日 dates an event here, not a paper: there is no 2021-11-10 issue
    hits = retriever.search("2021年11月10日投入运行的云绩效平台", top_k=5)
    assert hits
