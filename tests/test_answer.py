"""Extractive answers: quality floors on eval/dev.jsonl, markers, not-found, follow-ups."""

from __future__ import annotations

import re

import pytest

from qa.answer import MAX_ANSWER_CHARS, Answerer
from qa.evaluate import evaluate_answers, load_questions
from qa.understand import Turn

from conftest import DEV


@pytest.fixture(scope="module")
def answerer(retriever):
    return Answerer(retriever)


@pytest.fixture(scope="module")
def report(answerer):
    return evaluate_answers(load_questions(DEV), answerer)


def test_answer_quality_floors(report):
    overall = report["overall"]
    assert overall["n"] == 34
    assert overall["evidence_in_answer"] >= 0.65, report
    assert overall["wrongly_not_found"] <= 2, report
    assert report["unanswerable"]["n"] == 6 and report["unanswerable"]["not_found"] >= 4, report


def test_every_citation_is_cited_and_the_answer_is_short(answerer):
    for q in load_questions(DEV)[:12]:
        result = answerer.ask(q.question)
        if result.no_answer:
            continue
        markers = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
        assert markers == {c.n for c in result.citations}, result.answer
        assert len(re.sub(r"\[\d+\]", "", result.answer)) <= MAX_ANSWER_CHARS
        # each cited sentence is quoted from its passage
        for sentence, n in re.findall(r"([^\[\]]+?)\[(\d+)\]", result.answer):
            cited = next(c for c in result.citations if c.n == int(n))
            assert sentence.rstrip("…") in cited.hit.text or sentence.endswith("…")


def test_not_found_lists_the_closest_passages(answerer):
    result = answerer.ask("衡阳市第十六届人民代表大会第二次会议是哪天开幕的？")
    assert result.no_answer and "未找到" in result.answer
    assert result.citations and "[" not in result.answer


def test_follow_up_is_answered_in_the_context_of_the_conversation(answerer):
    first = "湖南现代石化产业对接会上，代表岳阳发言的是谁？"
    r1 = answerer.ask(first)
    assert "陈阁辉" in r1.answer
    r2 = answerer.ask("那衡阳方面是谁致辞的？", [Turn("user", first), Turn("assistant", r1.answer)])
    assert not r2.no_answer and "刘越高" in r2.answer


def test_ask_for_the_attribute_the_question_names():
    assert Answerer.focus_terms("衡山科学城二期项目的总投资是多少？") == [["投资"]]
    assert Answerer.focus_terms("《衡阳市文明行为促进条例》是从哪天起正式施行的？") == [["施行"]]
    assert Answerer.focus_terms("衡阳编村庄规划时，会优先考虑哪几条河边上的村子？") == []  # 'which', not 'how many'
