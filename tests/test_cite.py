"""cite: citation labels and GB/T 7714-2015 references; inferred dates through the store and the
citation lookup. The web page's 复制引用 button: tests/test_web.py and tests/test_web_cite.py."""

from __future__ import annotations

import pytest

from qa.cite import byline_authors, citation_label, gbt7714_reference, make_citation
from qa.lookup import citation_detail, issue_detail
from qa.store import IssueRow, Store


def issue_row(**fields) -> IssueRow:
    base = dict(id="x", source="x.txt", checksum="0", encoding="utf-8", paper="衡阳日报", date="2023-12-21",
                date_source="masthead", weekday=None, issue_no="18730", page=1, page_count=8)
    return IssueRow(**(base | fields))


@pytest.mark.parametrize("byline, authors", [
    ("衡阳日报讯(全媒体记者 陈润)", ["陈润"]),
    ("本报讯（记者 陈润）", ["陈润"]),
    ("衡阳日报讯(全媒体记者 陈润 邓小山)", ["陈润", "邓小山"]),
    ("本报记者 胡建军 通讯员 唐兰荣", ["胡建军", "唐兰荣"]),
    ("本报讯(记者 向吟吟 实习生 蒋妍)", ["向吟吟", "蒋妍"]),
    ("本报评论员", []),
    (None, []),
])
def test_byline_authors(byline, authors):
    assert byline_authors(byline) == authors


def test_gbt7714_reference_of_a_printed_page():
    ref = gbt7714_reference(issue_row(), "学习贯彻习近平总书记重要讲话指示精神", "衡阳日报讯(全媒体记者 陈润)")
    assert ref == "陈润. 学习贯彻习近平总书记重要讲话指示精神[N]. 衡阳日报, 2023-12-21(1)."


def test_gbt7714_several_authors_and_unknown_parts_left_out():
    ref = gbt7714_reference(issue_row(), "对接会在衡举行", "本报讯(记者 陈润 邓小山)")
    assert ref == "陈润, 邓小山. 对接会在衡举行[N]. 衡阳日报, 2023-12-21(1)."
    four = gbt7714_reference(issue_row(), "标题", "本报讯(记者 张一 李二 王三 赵四)")
    assert four.startswith("张一, 李二, 王三, 等. 标题[N].")  # GB/T 7714: three, then 等
    # A wire story has no byline: no author; a page with no masthead: no paper, no page.
    bare = issue_row(paper=None, page=None, issue_no=None, date=None, date_source=None)
    assert gbt7714_reference(bare, "习近平同伊朗总统通电话", None) == "习近平同伊朗总统通电话[N]."


@pytest.mark.parametrize("source", ["inferred", "filename"])
def test_an_inferred_date_is_bracketed_and_labelled(source):
    issue = issue_row(paper=None, page=None, issue_no=None, date="2021-08-18", date_source=source,
                      date_evidence="正文所报最晚日期“8月18日”")
    ref = gbt7714_reference(issue, "市政府召开常务会议", "本报讯(记者 罗文鹏)")
    assert ref == "罗文鹏. 市政府召开常务会议[N]. [2021-08-18]."
    assert citation_label(issue, "市政府召开常务会议") == "2021年8月18日（推断）《市政府召开常务会议》"


# --- through the index ------------------------------------------------------------------------

def test_inferred_dates_reach_the_store_and_the_citation(seed_index):
    store = Store.open(seed_index)
    issue = store.issue("004_88725a97d360d681")
    assert (issue.date, issue.date_source) == ("2021-08-18", "inferred")
    assert "2021年第15次常务会议" in issue.date_evidence
    detail = issue_detail(store, issue.id)
    assert detail["date_evidence"] == issue.date_evidence
    article = next(a for a in detail["articles"] if a["headline"] == "市政府召开常务会议")
    found = citation_detail(store, article["passages"][0]["id"])
    cited = found["citation"]
    assert cited["label"].startswith("2021年8月18日（推断）")
    assert cited["date_evidence"] == issue.date_evidence
    assert cited["gbt7714"] == "罗文鹏. 市政府召开常务会议[N]. [2021-08-18]."
    # The subtitle is part of the first passage, and the article text shows it in place.
    assert "研究部署全市“交房即交证”" in article["passages"][0]["text"]
    assert found["highlight"] is not None


def test_citation_of_a_printed_page_matches_make_citation(seed_index):
    store = Store.open(seed_index)
    issue = store.issue("001_f6fea3e315053468")
    article = next(a for a in store.articles(issue.id) if a.headline == "学习贯彻习近平总书记重要讲话指示精神")
    passage = store.passages_of_article(article.id)[0]
    cited = make_citation(issue, article, passage)
    assert cited.gbt7714 == "陈润. 学习贯彻习近平总书记重要讲话指示精神[N]. 衡阳日报, 2023-12-21(1)."
    assert cited.date_evidence is None
    assert citation_detail(store, passage.id)["citation"] == cited.to_dict()


# --- the web page -----------------------------------------------------------------------------
