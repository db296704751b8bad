"""Extractive answers: quality floors on eval/dev.jsonl, markers, lists, calibrated not-found,
follow-ups, and the report `qa eval` prints."""

from __future__ import annotations

import re

import pytest

from qa.answer import MAX_ANSWER_CHARS, Answerer, SentenceVectors, _restates
from qa.answerability import (Answerability, NotFoundModel, asked_value, entity_terms, fit_logistic, missing_share,
                              pick_threshold, slot_terms, stated_share, term_present, value_stated)
from qa.evaluate import evaluate_answers, format_report, load_questions
from qa.lexical import fold
from qa.understand import Turn

from conftest import DEV

_ITEM = re.compile(r"^\d+\. ")

# Answers that regressed when this round's branches merged; they must pass again to close #11.
KNOWN_MISS = pytest.mark.xfail(strict=False, reason="known miss on the merged system (heading lines in first "
                               "passages, fusion by overlap, refit not-found model); open in issue #11")


@pytest.fixture(scope="module")
def answerer(retriever):
    return Answerer(retriever)


@pytest.fixture(scope="module")
def report(answerer):
    return evaluate_answers(load_questions(DEV), answerer)


def _claims(answer: str) -> list[tuple[str, int]]:
    """(quoted text, marker) for every claim; list items lose their '1. ' numbering."""
    return [(_ITEM.sub("", text.strip()), int(n)) for text, n in re.findall(r"([^\[\]]+?)\[(\d+)\]", answer)]


def test_answer_quality_floors(report):
    overall = report["overall"]
    assert overall["n"] == 34
    assert overall["evidence_in_answer"] >= 0.85, report
    assert overall["wrongly_not_found"] <= 2, report
    assert report["unanswerable"]["n"] == 6 and report["unanswerable"]["not_found"] >= 3, report
    assert 0 < report["not_found"]["precision"] <= 1 and report["tradeoff"], report


def test_every_citation_is_cited_and_the_answer_is_short(answerer):
    for q in load_questions(DEV)[:12]:
        result = answerer.ask(q.question)
        if result.no_answer:
            continue
        markers = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
        assert markers == {c.n for c in result.citations}, result.answer
        assert len(re.sub(r"\[\d+\]", "", result.answer)) <= MAX_ANSWER_CHARS
        for claim, n in _claims(result.answer):  # each sentence of a claim is quoted from its passage
            cited = next(c for c in result.citations if c.n == n)
            for part in filter(None, re.split(r"(?<=[。！？；!?;])| ", claim)):
                assert part.rstrip("…") in cited.hit.text, (part, cited.hit.text)
        assert not result.answer.startswith(("本报讯", "衡阳日报讯")), result.answer  # bylines are the citation's


def test_a_question_for_several_things_lists_one_item_per_article(retriever):
    # Composition only: an answerer that never says "not found" (calibration is measured by `qa eval`).
    answerer = Answerer(retriever, model=NotFoundModel(weights={}, bias=10.0, mean={}, scale={}))
    history = [Turn("user", "2021年11月30日衡阳日报头版讲了什么？"), Turn("assistant", "…")]
    result = answerer.ask("那天头版报道了哪些会议？", history)
    lines = result.answer.split("\n")
    assert len(lines) >= 2 and all(_ITEM.match(line) for line in lines), result.answer
    assert [c.n for c in result.citations] == list(range(1, len(lines) + 1))
    assert len({c.hit.article_id for c in result.citations}) == len(lines)  # one article per item
    assert {c.hit.citation.date for c in result.citations} == {"2021-11-30"}  # the conversation's day
    for text, n in _claims(result.answer):
        assert text.rstrip("…") in result.citations[n - 1].hit.text
    assert len(re.sub(r"\[\d+\]|\n|\d+\. ", "", result.answer)) <= MAX_ANSWER_CHARS


def test_an_abbreviated_name_is_answered_from_the_full_name(answerer):
    # 跨境电商 in the question, 跨境电子商务 on the page; the "全称" asked for is the quoted name.
    result = answerer.ask("衡阳获批设立的跨境电商综合试验区全称是什么？")
    assert not result.no_answer and "跨境电子商务综合试验区" in result.answer, result.answer


@KNOWN_MISS
def test_not_found_lists_the_closest_passages(answerer):
    result = answerer.ask("衡阳市第十六届人民代表大会第二次会议是哪天开幕的？")
    assert result.no_answer and "未找到" in result.answer
    assert result.citations and "[" not in result.answer
    assert result.confidence is not None and result.confidence < answerer.model.threshold


def test_an_issue_or_day_the_archive_lacks_is_said_not_silently_dropped(answerer):
    # no issue 99999: the answer comes from other issues, and says so
    lacking = answerer.ask("第99999号衡阳日报报道了长沙海关的哪些支持？")
    assert lacking.caveat == "档案中没有第99999号报纸，以下引自其他各期。"
    assert lacking.to_dict()["warning"] == lacking.caveat and lacking.warning is None
    assert lacking.citations and all(c.hit.citation.issue != "99999" for c in lacking.citations)
    # an issue of other days: its days are left out, the issue kept
    misdated = answerer.ask("2020年11月30日第18012号衡阳日报报道的百强市榜单中衡阳排第几？")
    assert misdated.caveat == "档案中的第18012号不是2020年11月30日出版的，以下引自第18012号。"
    assert {c.hit.citation.issue for c in misdated.citations} == {"18012"}
    # an event's day: the paper of the day after reports it, no caveat
    event = answerer.ask("2021年11月29日习近平以视频方式出席了什么会议？")
    assert event.caveat is None and "warning" not in event.to_dict() and event.citations
    assert {c.hit.citation.date for c in event.citations} == {"2021-11-30"}
    # a paper's day the archive lacks
    day = answerer.ask("2021年11月29日的衡阳日报报道了哪位国家主席的讲话？")
    assert day.caveat == "档案中没有2021年11月29日出版的报纸，以下引自其他日期。"
    # the caller's own filter that matches nothing: no passages to list, and none promised
    none = answerer.ask("长沙海关关长是谁？", date_from="2025-01-01")
    assert none.no_answer and none.citations == [] and "以下" not in none.answer


def test_a_question_in_traditional_characters_gets_the_same_answer(answerer):
    traditional, simple = answerer.ask("長沙海關關長是誰？"), answerer.ask("长沙海关关长是谁？")
    assert not traditional.no_answer and "朱光耀" in traditional.answer
    assert traditional.answer == simple.answer


def test_a_number_in_the_unit_asked_for_opens_the_answer(answerer):
    from qa.answerability import unit_stated

    assert unit_stated("衡阳排第几位？", "衡阳在该榜单中位列第88位。")
    assert not unit_stated("衡阳排第几位？", "入选全国第四批“多式联运示范工程”")  # a number, another unit
    assert unit_stated("全年地区生产总值是多少亿元？", "全年实现地区生产总值3840.31亿元")
    assert not unit_stated("哪天开幕？", "3月1日开幕")  # no unit asked
    # '第四批' in a sentence about every list made it count as a value as much as '第88位'
    result = answerer.ask("衡阳在全国先进制造业百强市榜单中排第几位？")
    assert result.answer.startswith("衡阳在该榜单中位列第88位。"), result.answer


def test_follow_up_is_answered_in_the_context_of_the_conversation(answerer):
    first = "湖南现代石化产业对接会上，代表岳阳发言的是谁？"
    r1 = answerer.ask(first)
    assert "陈阁辉" in r1.answer
    r2 = answerer.ask("那衡阳方面是谁致辞的？", [Turn("user", first), Turn("assistant", r1.answer)])
    assert not r2.no_answer and "刘越高" in r2.answer


def test_a_follow_up_for_a_value_of_what_was_said_quotes_it_again_and_no_teasers(answerer):
    first = "习近平同哪位日本首相通了电话？"
    r1 = answerer.ask(first)
    assert "菅义伟" in r1.answer
    r2 = answerer.ask("他们是哪天通的电话？", [Turn("user", first), Turn("assistant", r1.answer)])
    # the date is in the sentence already quoted; the teaser lines of other calls
    # ('习近平同伊拉克总统通电话', its story on another page) state no date
    assert r2.answer.startswith("新华社北京9月25日电") and "9月25日晚" in r2.answer, r2.answer
    assert "伊拉克" not in r2.answer and "伊朗" not in r2.answer, r2.answer


def test_sentence_vectors_are_embedded_once(retriever):
    calls = []

    class Counting:
        dim = retriever.embedder.dim

        def embed_passages(self, texts):
            calls.append(list(texts))
            return retriever.embedder.embed_passages(texts)

    vectors = SentenceVectors(Counting(), size=2)
    first = vectors.of(["衡阳在该榜单中位列第88位。", "11月10日，该平台正式投入运行。"])
    again = vectors.of(["11月10日，该平台正式投入运行。", "衡阳在该榜单中位列第88位。"])
    assert len(calls) == 1 and (first[::-1] == again).all()
    vectors.of(["第三句。"])  # evicts the least recently used
    assert len(vectors._cache) == 2


def test_the_kind_of_value_asked_for():
    assert asked_value("湖南省第十二次党代会是哪天开幕的？") == "date"
    assert asked_value("衡山科学城二期项目的总投资是多少？") == "quantity"
    assert asked_value("衡阳编村庄规划时，会优先考虑哪几条河边上的村子？") is None  # names, not a count
    assert value_stated("督察组组长是谁？", "省第一生态环境保护督察组组长张兰通报督察报告")
    assert not value_stated("服务中心的负责人是谁？", "北斗星社会工作服务中心相关负责人介绍")
    assert not value_stated("是哪天下发的？", "日前,市政府办下发《通知》")
    assert asked_value("平台是由哪家公司开发的？") == "organisation"
    assert asked_value("第三届中俄能源商务论坛在哪座城市举办？") == "place"
    # A value the question itself names is not the answer: 2021 asked about is no 2021 stated.
    assert not value_stated("衡阳市2021年全年地区生产总值是多少亿元？", "2021年衡阳经济运行稳中向好")
    assert value_stated("衡阳市2021年全年地区生产总值是多少亿元？", "2021年衡阳地区生产总值3840亿元")


def test_answer_slot_and_entities_of_a_question():
    assert slot_terms("市中心医院华新分院的院长是谁？") == ["院长"]
    assert "开幕" in slot_terms("湖南省第十二次党代会是哪天开幕的？")
    assert "开发" in slot_terms("“云绩效、云督查”平台是由哪家公司开发的？")
    assert "伊朗" in entity_terms("习近平同伊朗总统通电话时谈了哪些内容？")
    assert "第十六届" in entity_terms("衡阳市第十六届人民代表大会第二次会议是哪天开幕的？")
    assert missing_share(["院长", "华新"], "华新分院副院长") == 0.0
    assert missing_share(["伊朗"], "习近平同伊拉克总统通电话") == 1.0 and missing_share([], "x") == 0.0
    # The slot lies beyond the question phrase's measure word; the class asked for is no entity.
    assert "举办" in slot_terms("第三届中俄能源商务论坛在哪座城市举办？")
    assert "城市" not in entity_terms("第三届中俄能源商务论坛在哪座城市举办？")
    assert "非洲" in entity_terms("人民大会堂东大厅内摆放了中国和多少个非洲国家的国旗？")
    # The paper's own date, issue number and name select the issue; they are not the story's names.
    assert entity_terms("2021年11月30日的衡阳日报上，习近平同哪国总统通了电话？") == ["习近平"]
    assert entity_terms("第18730号衡阳日报报道了在衡阳召开的哪些会议？") == ["衡阳"]


def test_sentences_that_restate_the_question_are_measured():
    asked = fold("政协第十二次主席会议都讨论了什么？")
    assert _restates(asked, "政协召开第十二次主席会议。") > _restates(asked, "会议集中学习了重要讲话精神。")
    assert _restates(asked, "。") == 0.0


def test_terms_are_stated_literally_or_abbreviated_either_way():
    assert term_present("跨境电商", "成功获批“中国(衡阳)跨境电子商务综合试验区”")  # the question abbreviates
    assert term_present("人民代表大会", "市人大常委会党组书记")  # the page abbreviates
    assert term_present("党代会", "湖南省第十二次党代表大会") and term_present("政协", "政治协商会议")
    assert term_present("人大", "人民代表大会")  # a two-character abbreviation of one whole word
    assert not term_present("全称", "全面称赞")  # ... not of characters scattered over two words
    assert not term_present("伊朗", "习近平同伊拉克总统通电话")
    assert not term_present("第十二次", "第二次会议")  # numbered names only literally
    assert not term_present("跨境电商", "跨境。电子商务")  # never across punctuation
    assert missing_share(["跨境电商", "全称"], "中国(衡阳)跨境电子商务综合试验区") == 0.5
    assert stated_share({"跨境电商": 3.0, "全称": 1.0}, "跨境电子商务综合试验区") == 0.75


def test_heading_lines_are_not_quoted_as_the_answer(answerer):
    result = answerer.ask("秦国文在雁峰区调研时对城市治理提出了什么要求？")
    assert not result.no_answer
    assert "调研时强调——" not in result.answer and "聚焦产业高质量发展 提高城市治理现代化水平" not in result.answer


def test_not_found_model_fits_and_picks_a_threshold_within_the_budget():
    rows = [[0.9, 0.1], [0.8, 0.2], [0.85, 0.0], [0.3, 0.9], [0.2, 1.0], [0.4, 0.8]]
    labels = [1, 1, 1, 0, 0, 0]
    model = fit_logistic(rows, labels, ["sentence_cos", "missing"])
    assert model.weights["sentence_cos"] > 0 > model.weights["missing"]
    probs = [model.probability(Answerability(sentence_cos=a, missing=b)) for a, b in rows]
    model.threshold = pick_threshold(probs, labels, max_wrong=0.0)
    assert all((p >= model.threshold) == bool(y) for p, y in zip(probs, labels))
    packaged = NotFoundModel.load()
    assert set(packaged.weights) <= set(Answerability.names()) and 0 < packaged.threshold < 1


def test_the_threshold_is_judged_on_questions_the_model_did_not_see():
    """eval/fit_not_found.py: each question's out-of-fold probability comes from a model fitted
    without it (leave-one-out here: exactly the model fitted on the others)."""
    import sys

    sys.path.insert(0, str(DEV.parent))
    import fit_not_found as fitter

    rows = [[0.9, 0.1], [0.8, 0.2], [0.85, 0.0], [0.7, 0.3], [0.3, 0.9], [0.2, 1.0], [0.4, 0.8], [0.5, 0.6]]
    records = [{"answerable": int(a > 0.6), "features": {"sentence_cos": a, "missing": b}} for a, b in rows]
    names = ["sentence_cos", "missing"]
    oof = fitter.out_of_fold(records, names, k=len(records))
    for i, r in enumerate(records):
        others = fitter._logistic(records[:i] + records[i + 1:], names)
        assert oof[i] == pytest.approx(fitter.probability(others, r))
    assert oof != [fitter.probability(fitter._logistic(records, names), r) for r in records]


def test_the_value_is_looked_for_past_the_best_sentences():
    """valued_cos: the best cosine of a sentence holding the asked-for value, wherever it ranks;
    bound_cos: of one that also states the slot ('开幕'); the lowest cosine when none does."""
    from types import SimpleNamespace as NS

    from qa.answerability import _bound_cosines

    hits = [NS(citation=NS(headline="党代会召开"))]
    sentences = [NS(text="大会由省委主持，代表们认真审议报告。", passage=0, cos=0.93),
                 NS(text="大会于11月25日闭幕。", passage=0, cos=0.91),
                 NS(text="大会于11月22日开幕。", passage=0, cos=0.88),
                 NS(text="与会代表参观了展览。", passage=0, cos=0.80)]
    question = "党代会是哪天开幕的？"
    assert slot_terms(question) == ["开幕"]
    assert _bound_cosines(question, hits, sentences, ["开幕"]) == {"valued_cos": 0.91, "bound_cos": 0.88}
    no_opening = [sentences[0], sentences[1], sentences[3]]  # a date, but of the closing
    assert _bound_cosines(question, hits, no_opening, ["开幕"]) == {"valued_cos": 0.91, "bound_cos": 0.80}
    no_date = [sentences[0], sentences[3]]
    assert _bound_cosines(question, hits, no_date, ["开幕"]) == {"valued_cos": 0.80, "bound_cos": 0.80}


def test_format_report_prints_overall_last_and_the_trade_off():
    by_kind = {"overall": {"n": 2}, "dated": {"n": 1}, "factoid": {"n": 1}}
    stats = {"precision": 0.8, "recall": 0.9, "wrongly_not_found_rate": 0.05, "flagged": 10, "unanswerable": 9}
    text = format_report({"retrieval": {"by_kind": by_kind},
                          "answers": {"by_kind": by_kind, "unanswerable": {"n": 9, "not_found": 8},
                                      "not_found": stats, "by_split": {"test": stats}, "threshold": 0.5,
                                      "tradeoff": [{"threshold": 0.5} | stats]}})
    lines = text.splitlines()
    kinds = [line.split()[0] for line in lines[1:4]]
    assert kinds == ["dated", "factoid", "overall"]
    assert any("precision=0.8" in line and "recall=0.9" in line for line in lines)
    assert any("split test" in line for line in lines) and "trade-off" in text


# -- composing: content questions, informative heading lines (issue #11 items 1, 2) ---------------
from qa.answer import (CARRY_COST, CARRY_STEPS, _composing_values, _novel, _reading_order, _Sentence,  # noqa: E402
                       asks_content)


def test_questions_that_ask_what_was_said_or_decided():
    for q in ("习近平对“三农”工作作出的重要指示主要讲了什么？", "会议都讨论了什么？", "他谈了哪些合作打算？",
              "督察组对衡阳提出了什么整改要求？", "对中日关系怎么看？"):
        assert asks_content(q), q
    for q in ("衡阳在榜单中排第几？", "平台是哪天投入运行的？", "代表岳阳发言的副市长是谁？", "试验区全称是什么？"):
        assert not asks_content(q), q


def _run(passage: int, scores: list[float]) -> list[_Sentence]:
    return [_Sentence(f"第{passage}段第{j}句的内容各不相同。", passage, j, score=v) for j, v in enumerate(scores)]


def test_the_points_after_an_introducing_sentence_carry_its_score_for_content_questions_only():
    anchor, *points = _run(0, [1.0, 0.80, 0.80, 0.80, 0.80, 0.80])
    other = _run(1, [0.95])[0]
    sentences = [anchor, *points, other]
    value = _composing_values(sentences, "会议讨论了什么？")
    carried = [value[id(s)] for s in points]
    assert all(v >= 1.0 - CARRY_COST - 0.1 for v in carried[:CARRY_STEPS])  # within the answer margin
    assert carried[0] > carried[1] > carried[2]  # the nearer, the sooner quoted
    assert carried[CARRY_STEPS] == pytest.approx(0.80)  # only CARRY_STEPS sentences on
    assert value[id(other)] == pytest.approx(0.95)  # another passage is not continued
    factoid = _composing_values(sentences, "会议是哪天召开的？")
    assert all(factoid[id(s)] == pytest.approx(0.80) for s in points)  # a value question: no carry


def test_a_heading_line_informs_when_the_body_does_not_state_it():
    assert _novel("衡阳陆港型国家物流枢纽入选", "") == 1.0  # an article that is only its headings
    body = fold("8月18日上午,市委书记秦国文赴雁峰区调研经济社会发展情况。"
                "他强调,要聚焦产业高质量发展,提高城市治理现代化水平")
    assert _novel("秦国文在雁峰区调研时强调——", body) == 0.0  # a kicker the lede restates
    assert _novel("聚焦产业高质量发展 提高城市治理现代化水平", body) < 0.5


def _never_not_found(retriever) -> Answerer:
    """Composition only: an answerer that never says "not found" (calibration is `qa eval`'s)."""
    return Answerer(retriever, model=NotFoundModel(weights={}, bias=10.0, mean={}, scale={}))


def test_a_content_question_quotes_the_points_after_the_sentence_that_introduces_them(retriever):
    result = _never_not_found(retriever).ask("秦国文对民生事业提出了什么要求？")
    claim = next(text for text, _ in _claims(result.answer) if "民生事业要以人为本" in text)
    assert "要发挥群众主体作用" in claim, result.answer  # the next point, in reading order, same marker


def test_sentences_next_to_each_other_in_the_source_are_quoted_in_reading_order():
    s3, s4, s5, s9, s1 = (_Sentence(f"句子{k}。", 0, k) for k in (3, 4, 5, 9, 1))
    assert _reading_order([s5, s9, s3, s4, s1]) == [s3, s4, s5, s1, s9]  # the best one's block first
    assert _reading_order([s4, s9, s1]) == [s4, s1, s9]  # alone, the best still comes first
    assert _reading_order([s4, s5, s9]) == [s4, s5, s9]


def test_a_record_split_across_sentences_reads_as_printed(retriever):
    # '时间：…；地点：衡山科学城二期项目；项目完成率：82.7%' is one record in three sentences; the
    # completion rate scores best, but the place before it belongs with it
    result = _never_not_found(retriever).ask("云督查平台上显示的衡山科学城二期项目完成了多少？")
    assert "地点：衡山科学城二期项目；项目完成率：82.7%" in result.answer, result.answer


def test_a_heading_line_that_states_what_no_body_sentence_does_is_quoted(retriever):
    # The article is its headline and subtitle only (a teaser); the subtitle is the answer.
    question = "国家发展改革委发布的“十四五”首批国家物流枢纽建设名单中，衡阳入选的是什么枢纽？"
    result = _never_not_found(retriever).ask(question)
    assert "衡阳陆港型国家物流枢纽入选" in result.answer, result.answer


# -- calibrated "not found" (issue #11 item 3): the features and the held-out figures ------------------------------
from qa.answerability import organisation_names, value_near, without_own_lines  # noqa: E402

NOTFOUND = DEV.parent / "notfound.jsonl"


def test_datelines_and_bylines_are_the_papers_own_not_an_answer():
    assert without_own_lines("新华社北京11月29日电 国家主席习近平").strip("， ") == "国家主席习近平"
    assert without_own_lines("衡阳日报讯 (全媒体记者 陈润) 12月12日").strip("， ") == "12月12日"
    assert without_own_lines("■本报记者 胡建军 通讯员 唐兰荣\n衡阳市召开").strip("，\n ") == "衡阳市召开"
    # a byline's names stand apart; the words after a bare 本报记者 are the story's, kept
    assert without_own_lines("本报记者从衡阳市统计局获悉今年全市GDP增长").strip("， ") == "从衡阳市统计局获悉今年全市GDP增长"
    # the wire's 北京 and the filing date are no venue and no date of the event asked about
    assert not value_stated("论坛在哪座城市举办？", "新华社北京11月29日电 国家主席出席论坛")
    assert not value_stated("论坛是哪天开幕的？", "新华社北京11月29日电 国家主席出席论坛")
    assert value_stated("论坛是哪天开幕的？", "新华社北京11月29日电 论坛11月28日开幕")


def test_documents_reasons_and_places_are_kinds_of_value_too():
    assert asked_value("会议讨论了哪份文件？") == asked_value("双方签了什么合作协议？") == "document"
    assert value_stated("会议讨论了哪份文件？", "会议讨论了《关于推进乡村全面振兴的意见》")
    assert not value_stated("《通知》是哪份文件？", "《通知》要求各部门落实")  # the question's own title
    assert asked_value("常宁市为什么没有开展票决制？") == "reason"
    assert not value_stated("常宁市为什么没有开展票决制？", "除常宁市、南岳区外，全市10个县(市)区都已开展")
    assert asked_value("大会在什么地方召开？") == asked_value("调研组到哪些外地城市考察？") == "place"
    # a place word before a role or a level qualifies it: people, or no kind at all
    assert asked_value("哪些市领导出席了签约仪式？") == asked_value("哪位区负责人介绍了情况？") == "person"
    assert asked_value("哪些市级领导出席了签约仪式？") == "person"
    assert asked_value("要求衡阳对接哪些国家层面的发展战略？") is None
    assert asked_value("成立了什么领导小组？") is None  # a body, not people
    assert asked_value("衡阳代管哪个县级市？") == "place"


def test_the_form_of_the_answer_is_no_slot_the_page_must_state():
    assert slot_terms("衡阳获批设立的跨境电商综合试验区全称是什么？") == []
    assert "内容" not in slot_terms("习近平同伊朗总统通电话时谈了哪些内容？")
    assert slot_terms("市中心医院华新分院的院长是谁？") == ["院长"]
    # '什么时候生效' is answered by a date: no page writes 时候; the slot is the word after it
    assert "生效" in slot_terms("中国和尼加拉瓜的自由贸易协定什么时候正式生效？")
    assert "时候" not in slot_terms("中国和尼加拉瓜的自由贸易协定什么时候正式生效？")


def test_a_measure_word_belongs_to_the_question_phrase():
    # '项' comes out of jieba a noun, so the slot used to stop at it: '行动' lies beyond
    assert "行动" in slot_terms("园区方案要求开展多少项专项行动？")


def test_more_ways_to_ask_for_and_to_state_a_value():
    assert asked_value("检查组是在什么时间检查的？") == asked_value("协定在哪个月生效？") == "date"
    assert asked_value("一共分几批推进？") == asked_value("双方合作了几年？") == asked_value("地震是几级？") == "quantity"
    # a count in words before what it counts: 六大行动, 三批, 四年
    assert value_stated("要求开展多少项专项行动？", "积极开展“六大行动”")
    assert value_stated("一共分几批推进？", "项目分三批推进")
    assert not value_stated("一共分几批推进？", "项目分批推进")
    assert not value_stated("要求开展多少项专项行动？", "积极开展专项行动")
    # a party congress and a vague '一批' are no count
    assert not value_stated("要求开展多少项专项行动？", "深入学习贯彻党的二十大精神，推动一批项目落地")
    # an organisation by the kind in its name, where jieba's tagger gives no 'nt'
    assert value_stated("邓群策会见了哪些企业的负责人？", "会见中国恒大集团公司总裁颜甫全")
    assert not value_stated("是哪家公司开发的？", "平台由公司技术人员开发")  # no name: no value
    # the question's own organisation, whatever words stand before it in the sentence
    assert not value_stated("中国中铁股份有限公司和哪家企业一起参加？", "刘越高会见中国中铁股份有限公司副总裁")
    assert organisation_names("会见南华大学附一医院党委书记高山") == [("南华大学",), ("南华大学附一医院",)]


def test_the_value_must_stand_next_to_the_subject():
    weights = {"营商环境": 3.0, "衡阳": 1.0}
    assert value_near("衡阳在营商环境榜单中排第几名？", weights, ["衡阳在营商环境榜单中列第8位。"]) == 1.0
    assert value_near("衡阳在营商环境榜单中排第几名？", weights,
                      ["衡阳在营商环境等榜单中争先进位，先进制造业百强市", "其中衡阳位列第88位。"]) == 0.25


@pytest.fixture(scope="module")
def notfound_report(answerer):
    return evaluate_answers([q for q in load_questions(NOTFOUND) if q.split == "test"], answerer)


def test_not_found_on_the_held_out_half_of_the_near_misses(notfound_report):
    """The held-out half of eval/notfound.jsonl (never fitted on): floors a little under the
    measured figures (eval/fit_not_found.py prints them), so a regression shows."""
    stats = notfound_report["not_found"]
    assert stats["unanswerable"] == 23
    assert stats["recall"] >= 0.5 and stats["wrongly_not_found_rate"] <= 0.1, stats  # measured 15/23, 0/14


def test_a_sentence_that_states_the_asked_for_relation_scores_higher(answerer, monkeypatch):
    """SLOT_WEIGHT: the sentence with the question's slot word ('主持' of '由谁主持') gains it,
    the lede that restates the question's topic does not; a question that asks what was said
    ('提出了什么要求') is answered by the points after the sentence that introduces them, so its
    saying verbs are no slot."""
    import qa.answer as answer_module
    from qa.cite import Citation
    from qa.retrieve import Hit
    from qa.understand import understand

    text = ("12月14日上午,市长朱健向市人大常委会机关干部征求《政府工作报告》意见和建议。"
            "市人大常委会主任刘正兴主持会议。会议要求,各部门要提出意见和建议。")
    hit = Hit("c1", text, 1.0, Citation(None, None, None, None, None, "征求意见", None, "x.txt", 0, len(text), "x"),
              "i1", "a1")

    def scores(question: str, weight: float) -> dict[str, float]:
        monkeypatch.setattr(answer_module, "SLOT_WEIGHT", weight)
        qvec = answerer.retriever.embedder.embed_queries([question])[0]
        weights = answerer._term_weights(understand(question))
        return {s.text[:8]: s.score for s in answerer._score([hit], qvec, weights, question)}

    weight = answer_module.SLOT_WEIGHT
    assert weight > 0
    question = "市长征求人大机关干部意见的会议由谁主持？"
    with_slot, without = scores(question, weight), scores(question, 0.0)
    assert with_slot["市人大常委会主任"] == pytest.approx(without["市人大常委会主任"] + weight)
    assert with_slot["12月14日上午"] == pytest.approx(without["12月14日上午"])
    content = "征求意见时会议提出了什么要求？"
    assert scores(content, weight) == pytest.approx(scores(content, 0.0))


def test_a_list_across_articles_is_gathered_from_a_named_day_only(retriever, monkeypatch):
    """Items from several articles need the issue or day they are gathered from (the question's,
    the conversation's or the filter's); a question that names none asks about one article, and
    its items are in that article's sentences. LIST_MARGIN is opened so that every article of the
    issue qualifies: the rule, not the margin, decides."""
    import qa.answer as answer_module

    monkeypatch.setattr(answer_module, "LIST_MARGIN", 1.0)
    answerer = Answerer(retriever, model=NotFoundModel(weights={}, bias=10.0, mean={}, scale={}))
    named = answerer.ask("2021年11月30日衡阳日报头版报道了哪些会议？")
    assert len(named.answer.split("\n")) >= 2 and _ITEM.match(named.answer), named.answer
    unnamed = answerer.ask("秦国文在雁峰区调研时先后深入了哪些企业？")
    assert not _ITEM.match(unnamed.answer) and "衡变公司" in unnamed.answer, unnamed.answer
    day = answerer.ask("秦国文8月18日那天都有哪些活动？")  # a day without a year still gathers
    assert len(day.answer.split("\n")) >= 2 and _ITEM.match(day.answer), day.answer
    # an event's day (the paper of 12-21 reports 12-20): the items are of the days after it only,
    # not of 2020's call with Japan
    event = answerer.ask("2023年12月20日习近平分别会见或通话了哪些外国领导人？")
    assert {c.hit.citation.date for c in event.citations} == {"2023-12-21"}, event.answer
    # a day in the conversation's words is not the follow-up's: it asks about the article at hand
    history = [Turn("user", "12月14日市长朱健征求意见时提出了什么要求？"), Turn("assistant", "…")]
    follow_up = answerer.ask("他还强调了哪些要求？", history)
    assert not _ITEM.match(follow_up.answer), follow_up.answer


def test_a_sentence_that_restates_the_question_around_the_asked_for_number_comes_first(retriever):
    """RESTATE_COST spares a sentence that states a number, date or rank the question asks for:
    '衡阳在该榜单中位列第88位' restates the question's words around the one new thing, its value."""
    answerer = Answerer(retriever, model=NotFoundModel(weights={}, bias=10.0, mean={}, scale={}))
    result = answerer.ask("衡阳在先进制造业百强市榜单中排第几？")
    assert "第88位" in result.pieces[0], result.answer


def test_rerank_lifts_the_passage_with_the_sentence_that_matches(answerer):
    """Of two passages equally retrieved, the one with a sentence close to the question comes
    first, whichever order retrieval gave; one hit passes through; one embedding call for all."""
    from qa.cite import Citation
    from qa.retrieve import Hit

    def hit(cid: str, text: str) -> Hit:
        return Hit(cid, text, 0.5, Citation(None, None, None, None, None, None, None, "x.txt", 0, len(text), "x"), "i", "a")

    answering = hit("a", "会议听取了全市防汛工作汇报。湘江大桥维修工程计划于明年6月30日完工。会议还研究了其他事项。")
    other = hit("b", "市文化馆举办书法展览，展出作品两百余幅。展览免费向市民开放，持续到月底。")
    qvec = answerer.retriever.embedder.embed_queries(["湘江大桥维修工程什么时候完工？"])[0]
    assert [h.chunk_id for h in answerer._reranked([other, answering], qvec)] == ["a", "b"]
    assert [h.chunk_id for h in answerer._reranked([answering, other], qvec)] == ["a", "b"]
    assert answerer._reranked([other], qvec) == [other]
