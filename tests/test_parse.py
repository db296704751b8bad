"""parse: the five seed front pages, their metadata, articles, and unreadable files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from qa.parse import Page, PageError, parse_page, parse_text

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
P000 = SEEDS / "000_72e2c7496de26bfa.txt"
P001 = SEEDS / "001_f6fea3e315053468.txt"
P002 = SEEDS / "002_2cbcf802db6e83b8.txt"
P003 = SEEDS / "003_f6f5db6d93bde6b2.txt"
P004 = SEEDS / "004_88725a97d360d681.txt"
ALL_SEEDS = [P000, P001, P002, P003, P004]


def ws(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.fixture(scope="module")
def pages() -> dict[str, Page]:
    return {p.name[:3]: parse_page(p) for p in ALL_SEEDS}


def article_with(page: Page, headline: str):
    found = [a for a in page.articles if a.headline == headline]
    assert found, f"no article headlined {headline!r}; have {[a.headline for a in page.articles]}"
    return found[0]


def all_paragraph_text(page: Page) -> str:
    return "\n".join(a.text for a in page.articles)


# --- masthead metadata ------------------------------------------------------------------------

@pytest.mark.parametrize("key, date, weekday, issue_no, page_count", [
    ("000", "2021-11-30", "星期二", "18012", 8),
    ("001", "2023-12-21", "星期四", "18730", 8),
    ("003", "2020-09-26", "星期六", "176001", 4),  # misprinted issue number kept as printed
])
def test_masthead_metadata(pages, key, date, weekday, issue_no, page_count):
    issue = pages[key].issue
    assert (issue.date, issue.weekday, issue.issue_no, issue.page_count) == (date, weekday, issue_no, page_count)
    assert issue.paper == "衡阳日报"
    assert issue.page == 1
    assert issue.date_source == "masthead"


def test_issue_identity(pages):
    issue = pages["000"].issue
    assert issue.id == "000_72e2c7496de26bfa"
    assert issue.source == "000_72e2c7496de26bfa.txt"
    assert re.fullmatch(r"[0-9a-f]{64}", issue.checksum)
    assert issue.encoding == "utf-8"


@pytest.mark.parametrize("key", ["002", "004"])
def test_no_masthead_means_no_metadata(pages, key):
    issue = pages[key].issue
    # 002 opens with '新华社北京12月14日电' and 004 mentions '8月18日': body dates are not a printed
    # issue date (the date they give is inferred, see test_dates_inferred_from_the_text).
    assert issue.date_source == "inferred"
    assert issue.issue_no is None and issue.page is None and issue.page_count is None
    assert issue.paper is None and issue.weekday is None


def test_masthead_lines_are_not_article_text(pages):
    for key in ("000", "001", "003"):
        text = all_paragraph_text(pages[key])
        headlines = " ".join(a.headline or "" for a in pages[key].articles)
        for furniture in ("HENGYANG DAILY", "今日八版", "今日四版", "新闻热线", "连续出版物号"):
            assert furniture not in text and furniture not in headlines
        assert "第18012号" not in text


def test_footer_furniture_is_not_an_article(pages):
    page = pages["003"]
    cores = [a.headline for a in page.articles] + [p.text for a in page.articles for p in a.paragraphs]
    for furniture in ("掌上衡阳", "衡阳晚报", "值班编委", "邹雪峰"):
        assert furniture not in cores
    assert "邹雪峰" not in all_paragraph_text(page)


# --- sidecars ---------------------------------------------------------------------------------

SIDECAR = {"paper": "衡阳日报", "date": "2022-12-15", "issue": "18350", "page": 1,
           "page_count": 8, "weekday": "星期四"}


@pytest.mark.parametrize("sidecar_name", ["{name}.meta.json", "{stem}.meta.json"])
def test_sidecar_supplies_missing_metadata(tmp_path, sidecar_name):
    page_path = tmp_path / P002.name
    shutil.copy(P002, page_path)
    (tmp_path / sidecar_name.format(name=P002.name, stem=P002.stem)).write_text(
        json.dumps(SIDECAR, ensure_ascii=False), encoding="utf-8")
    issue = parse_page(page_path).issue
    assert issue.date == "2022-12-15" and issue.date_source == "sidecar"
    assert issue.issue_no == "18350" and issue.page == 1 and issue.page_count == 8
    assert issue.paper == "衡阳日报" and issue.weekday == "星期四"


def test_sidecar_does_not_override_the_masthead(tmp_path):
    page_path = tmp_path / P000.name
    shutil.copy(P000, page_path)
    (tmp_path / (P000.name + ".meta.json")).write_text(
        json.dumps({"date": "1999-01-01", "issue": "1", "page_count": 2}), encoding="utf-8")
    issue = parse_page(page_path).issue
    assert (issue.date, issue.date_source, issue.issue_no, issue.page_count) == (
        "2021-11-30", "masthead", "18012", 8)


def test_sidecar_page_number_wins_over_the_masthead_guess(tmp_path):
    # A masthead only implies page 1; a sidecar that says otherwise is the better word.
    page_path = tmp_path / P000.name
    shutil.copy(P000, page_path)
    (tmp_path / (P000.name + ".meta.json")).write_text(json.dumps({"page": 3}), encoding="utf-8")
    assert parse_page(page_path).issue.page == 3


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"date": "30/11/2021"}',
                                     '{"date": "2021-02-30"}', '{"page": "one"}'])
def test_broken_sidecar_is_an_error_naming_it(tmp_path, content):
    page_path = tmp_path / P004.name
    shutil.copy(P004, page_path)
    sidecar = tmp_path / (P004.name + ".meta.json")
    sidecar.write_text(content, encoding="utf-8")
    with pytest.raises(PageError, match=re.escape(sidecar.name)):
        parse_page(page_path)


def test_date_in_file_name_is_used_and_labelled(tmp_path):
    page_path = tmp_path / "hy 2021-08-19 第3版.txt"
    shutil.copy(P004, page_path)
    issue = parse_page(page_path).issue
    assert issue.date == "2021-08-19" and issue.date_source == "filename"
    assert issue.date_evidence == "文件名“hy 2021-08-19 第3版.txt”中的日期"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", issue.id)
    assert issue.source == page_path.name


# --- articles ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["000", "001", "002", "003", "004"])
def test_every_seed_has_headlined_articles(pages, key):
    headlined = [a for a in pages[key].articles if a.headline]
    assert len(headlined) >= 5
    assert [a.index for a in pages[key].articles] == list(range(len(pages[key].articles)))


@pytest.mark.parametrize("key", ["000", "001", "002", "003", "004"])
def test_paragraph_and_article_spans_match_the_source(pages, key):
    page = pages[key]
    for article in page.articles:
        assert 0 <= article.start <= article.end <= len(page.text)
        for p in article.blocks:
            assert ws(p.text) == ws(page.text[p.start:p.end]), p.text[:40]
            assert article.start <= p.start <= p.end <= article.end
        assert article.paragraphs or article.continuations, "a body or a pointer to one"


def test_headlines_kickers_subtitles(pages):
    first = pages["000"].articles[0]
    assert first.headline == "习近平出席中非合作论坛第八届部长级会议开幕式并发表主旨演讲"
    assert first.dateline == "新华社北京11月29日电"
    # The kicker shares the headline's line in 000: '...强调—— 奋力当好...'
    art = article_with(pages["000"], "奋力当好省党代会决策部署的“施工队”")
    assert art.kicker == "秦国文在衡阳市传达贯彻湖南省第十二次党代会精神上强调——"
    assert art.subtitle == "朱健主持"
    assert art.byline == "本报讯（记者 陈润）"

    md = pages["001"].articles[0]
    assert md.headline == "习近平会见俄罗斯总理米舒斯京"  # '## ' is Markdown, not headline text
    assert md.dateline == "新华社北京12月20日电"
    art = article_with(pages["001"], "学习贯彻习近平总书记重要讲话指示精神")
    assert art.kicker == "市委常委会召开会议"
    assert art.byline == "衡阳日报讯(全媒体记者 陈润)"

    art = article_with(pages["004"], "聚焦产业高质量发展 提高城市治理现代化水平")
    assert art.kicker == "秦国文在雁峰区调研时强调——"
    assert art.byline == "本报讯(记者 陈润)"
    art = article_with(pages["004"], "深化集聚意识,壮大衡阳产业强市基础")
    assert art.subtitle == "——四论衡阳加快建设省域副中心城市"
    assert art.byline == "本报评论员"

    art = article_with(pages["003"], "更好发挥互联网在倾听人民呼声 汇聚人民智慧方面的作用")
    assert art.kicker == "习近平对“十四五”规划编制工作网上征求意见活动作出重要指示强调"


def test_bylines_of_002(pages):
    art = article_with(pages["002"], "刘越高率队赴省直相关部门对接工作")
    assert art.byline == "衡阳日报讯 (全媒体记者 陈润)"
    assert art.paragraphs[0].text.startswith("衡阳日报讯 (全媒体记者 陈润)")
    art = article_with(pages["002"], "十三届市政协召开第十二次主席会议")
    assert art.subtitle == "刘丽华主持并讲话"
    # The page opens mid-story: a dateline with no headline above it.
    assert pages["002"].articles[0].headline is None
    assert pages["002"].articles[0].dateline == "新华社北京12月14日电"


def test_continuation_markers_are_recorded_not_body(pages):
    teaser = article_with(pages["002"], "坚定不移走好高质量发展之路")
    assert teaser.continuations == [">>> 详见第五版"]
    assert teaser.subtitle == "——以习近平同志为核心的党中央引领中国经济行稳致远述评"
    first = pages["000"].articles[0]
    assert first.continuations == ["（下转第七版）"]
    assert first.paragraphs[-1].text.endswith("提供100亿美元授信额度，")
    teaser = article_with(pages["000"], "国家发展改革委发布“十四五”首批国家物流枢纽建设名单")
    assert teaser.subtitle == "衡阳陆港型国家物流枢纽入选" and teaser.continuations == [">>> 详见第二版 >>>"]
    for key in pages:
        text = all_paragraph_text(pages[key])
        assert "下转" not in text and ">>>" not in text and "详见二版" not in text


def test_ocr_line_breaks_are_rejoined(pages):
    text_002 = all_paragraph_text(pages["002"])
    assert "“实行民生实事项目人大代表票决制,从项目征评、审议投票,到监督检查、项目评价,每个程序" in text_002
    assert "积极探索新型工业化发展的衡阳路径。" in text_002
    assert "共召开347次代表大会,共计票决民生实事项目759个," in text_002
    assert "共同实施“九项工程”。" in all_paragraph_text(pages["000"])
    assert "发展的主力军。东部地区共55个城市入围" in all_paragraph_text(pages["000"])
    # Intertitles inside a story stay separate paragraphs, not glued to the prose after them.
    art = article_with(pages["000"], "“数字化”为党委政府工作插上“智慧翅膀”")
    assert [p.text for p in art.paragraphs if p.subhead] == ["传统难题倒逼寻求破解之策", "数字化技术赋能传统管理工作"]


def test_a_broken_sentence_before_a_headline_stays_with_its_story(pages):
    # '刘正兴说,党的二十大报告系统阐明了' is cut off by the layout; the next article begins after it.
    before = article_with(pages["002"], "以“跳出衡阳看衡阳”的战略眼光把握机遇 奋力拼出衡阳高质量发展的加速度")
    assert before.paragraphs[-1].text == "刘正兴说,党的二十大报告系统阐明了"


def test_rejoin_keeps_a_space_only_between_ascii_words():
    text = "一个标题\n\n本报讯（记者 张三）Hello\n\nworld 衡阳\n\n日报 2021\n\n年。"
    page = parse_text(text, source="t.txt", checksum="0", encoding="utf-8")
    (article,) = page.articles
    assert article.paragraphs[0].text == "本报讯（记者 张三）Hello world 衡阳日报 2021年。"
    p = article.paragraphs[0]
    assert ws(p.text) == ws(page.text[p.start:p.end])


def test_dates_in_articles_are_not_the_issue_date():
    text = ("市委召开会议\n\n本报讯（记者 张三）2021年11月30日，市委召开会议。\n\n"
            "会议要求，今日八版的内容要做好。第18012号文件已经下发。\n")
    issue = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").issue
    assert issue.issue_no is None and issue.page_count is None
    assert (issue.date, issue.date_source) == ("2021-11-30", "inferred")  # never 'masthead'


def test_masthead_page_count_in_chinese_numerals():
    text = "衡阳日报\n\n2022年1月5日 星期三 农历辛丑年腊月初三\n\n今日十二版\n\n第18100号\n\n标题\n\n本报讯（记者 张三）正文。\n"
    issue = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").issue
    assert (issue.date, issue.weekday, issue.page_count, issue.issue_no, issue.page) == (
        "2022-01-05", "星期三", 12, "18100", 1)


def test_a_short_line_before_a_marker_ends_a_sentence_not_a_teaser():
    text = "一个标题\n\n本报讯（记者 张三）中国将提供100亿美元授信\n\n额度\n\n（下转第七版）\n"
    (article,) = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").articles
    assert article.headline == "一个标题"
    assert article.paragraphs[-1].text.endswith("授信额度")
    assert article.continuations == ["（下转第七版）"]


# --- encodings and unreadable files -----------------------------------------------------------

def _same_articles(a: Page, b: Page) -> None:
    assert a.text == b.text
    assert [(x.headline, x.kicker, x.subtitle, x.byline, x.dateline, x.continuations, x.start, x.end)
            for x in a.articles] == [(x.headline, x.kicker, x.subtitle, x.byline, x.dateline,
                                      x.continuations, x.start, x.end) for x in b.articles]
    assert [[(p.text, p.start, p.end) for p in x.paragraphs] for x in a.articles] == \
           [[(p.text, p.start, p.end) for p in x.paragraphs] for x in b.articles]


@pytest.mark.parametrize("seed", ALL_SEEDS, ids=lambda p: p.name[:3])
def test_gbk_copy_parses_the_same(tmp_path, pages, seed):
    copy = tmp_path / seed.name
    copy.write_bytes(seed.read_text(encoding="utf-8").encode("gbk"))
    parsed = parse_page(copy)
    assert parsed.issue.encoding == "gb18030"
    _same_articles(parsed, pages[seed.name[:3]])
    assert parsed.issue.date == pages[seed.name[:3]].issue.date


def test_utf8_bom_and_crlf_copies_parse_the_same(tmp_path, pages):
    original = P000.read_text(encoding="utf-8")
    bom = tmp_path / P000.name
    bom.write_bytes(b"\xef\xbb\xbf" + original.encode("utf-8"))
    parsed = parse_page(bom)
    assert parsed.issue.encoding == "utf-8-sig"
    _same_articles(parsed, pages["000"])
    assert parsed.issue.issue_no == "18012"

    crlf = tmp_path / "crlf" / P000.name
    crlf.parent.mkdir()
    crlf.write_bytes(original.replace("\n", "\r\n").encode("utf-8"))
    parsed = parse_page(crlf)
    assert "\r" not in parsed.text
    _same_articles(parsed, pages["000"])


@pytest.mark.parametrize("bom, encoding", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_copies_with_a_byte_order_mark_parse_the_same(tmp_path, pages, bom, encoding):
    copy = tmp_path / P000.name  # as Windows Notepad saves "Unicode", CRLF line ends included
    copy.write_bytes(bom + P000.read_text(encoding="utf-8").replace("\n", "\r\n").encode(encoding))
    parsed = parse_page(copy)
    assert parsed.issue.encoding == encoding
    _same_articles(parsed, pages["000"])
    assert parsed.issue.issue_no == "18012"


def test_utf16_without_a_byte_order_mark_is_named_not_called_binary(tmp_path):
    path = tmp_path / "no_bom.txt"
    path.write_bytes(P000.read_text(encoding="utf-8").encode("utf-16-le"))
    with pytest.raises(PageError, match=r"no_bom.txt: unsupported encoding \(UTF-16 without a byte order mark\)"):
        parse_page(path)


@pytest.mark.parametrize("name, content", [
    ("empty.txt", b""),
    ("blank.txt", b"  \n\n\t \r\n  "),
    ("nul.txt", "衡阳日报".encode("utf-8") + b"\x00\x01\x02" * 50),
    ("control.txt", bytes(range(1, 9)) * 200 + "衡阳".encode("utf-8")),
    ("undecodable.txt", b"\xff\xfe\xfd\xfc" * 20),
    ("utf16_binary.txt", b"\xff\xfe" + bytes(range(256)) * 4),  # a byte order mark on binary bytes
])
def test_unreadable_files_raise_page_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PageError, match=re.escape(name)):
        parse_page(path)


def test_missing_file_is_a_page_error(tmp_path):
    with pytest.raises(PageError, match="missing.txt"):
        parse_page(tmp_path / "missing.txt")


def test_headlines_without_bylines():
    text = ("城市书房开放\n\n全市新建的十家城市书房今天开放。读者可以免费借阅。\n\n"
            "记者近日走访了其中三家书房，发现座无虚席。\n")
    page = parse_text(text, source="x.txt", checksum="0", encoding="utf-8")
    (article,) = page.articles
    assert article.headline == "城市书房开放"
    assert article.byline is None  # '记者近日走访……' is prose, not a reporter line
    assert [p.text for p in article.paragraphs] == [
        "全市新建的十家城市书房今天开放。读者可以免费借阅。", "记者近日走访了其中三家书房，发现座无虚席。"]


def test_a_first_line_that_mentions_a_date_is_not_a_masthead():
    text = ("2021年9月21日是农历八月十五，市民在公园赏月。\n\n"
            "中秋赏月\n\n本报讯（记者 张三）正文。\n")
    page = parse_text(text, source="x.txt", checksum="0", encoding="utf-8")
    assert page.issue.date_source == "inferred" and page.issue.page is None
    assert page.articles[0].paragraphs[0].text.startswith("2021年9月21日是农历八月十五")


# --- parser errors found on the seed pages (issue 11, point 8) ----------------------------------

def test_three_stacked_titles_are_kicker_headline_subtitle(pages):
    # 002: 引题 / 主题 / 副题 with a series tag below; the tag labels the column, not the story.
    art = article_with(pages["002"], "866个民生实事项目“人大代表说了算”")
    assert art.kicker == "发展全过程人民民主的新举措 “2022年人大工作回眸”①"
    assert art.subtitle == "我市这项工作走在全国前列"
    # 001 without its Markdown marks reads the same way.
    text = ("市委常委会召开会议\n\n学习贯彻习近平总书记重要讲话指示精神\n\n会议决定召开全会 张三主持会议\n\n"
            "本报讯（记者 李四）正文。\n")
    (art,) = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").articles
    assert (art.kicker, art.headline, art.subtitle) == (
        "市委常委会召开会议", "学习贯彻习近平总书记重要讲话指示精神", "会议决定召开全会 张三主持会议")


def test_an_attribution_line_does_not_make_a_kicker():
    text = "对接会在衡举行\n\n张三出席并讲话\n\n李四主持\n\n本报讯（记者 王五）正文。\n"
    (art,) = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").articles
    assert (art.kicker, art.headline, art.subtitle) == (None, "对接会在衡举行", "张三出席并讲话 李四主持")


def test_an_editors_note_belongs_to_the_story_it_introduces(pages):
    page = pages["002"]
    assert not any(a.headline == "编者按" for a in page.articles)
    art = article_with(page, "866个民生实事项目“人大代表说了算”")
    assert art.paragraphs[0].text == "编者按" and art.paragraphs[0].subhead
    assert art.paragraphs[1].text.startswith("2022年即将过去")
    assert page.text[art.start:].startswith("编者按")
    assert "共召开347次代表大会" in art.text


def test_parallel_teasers_above_one_marker_are_separate_articles(pages):
    page = pages["004"]
    iran = article_with(page, "习近平同伊朗总统通电话")
    iraq = article_with(page, "习近平同伊拉克总统通电话")
    assert iran.subtitle is None and iraq.subtitle is None
    assert iran.continuations == iraq.continuations == [">>> 详见第七版 >>>"]
    assert iraq.index == iran.index + 1
    # A headline and its subtitle over a marker stay one teaser.
    teaser = article_with(pages["000"], "国家发展改革委发布“十四五”首批国家物流枢纽建设名单")
    assert teaser.subtitle == "衡阳陆港型国家物流枢纽入选"


def test_a_stray_block_of_another_story_goes_back_to_it(pages):
    # 003 prints the end of the 朱健 story twice: once, by a layout slip, inside the 珠晖区 story.
    page = pages["003"]
    zhuhui = article_with(page, "让每个服务对象都能享受到精准服务")
    zhujian = article_with(page, "奋力当好“三高地、四个新” 战略实施的主力军")
    assert "朱健" not in zhuhui.text and "六大强农行动" not in zhuhui.text
    assert zhuhui.paragraphs[-1].text.endswith("构筑全时空布局、全过")
    assert zhuhui.end == zhuhui.paragraphs[-1].end < zhujian.start
    assert "“百千万工程”“六大强农行动”" in zhujian.text
    assert zhujian.text.endswith("畅谈了学习感悟。")


def test_a_garbled_partial_repeat_at_the_end_is_cut(pages):
    art = article_with(pages["000"], "全国先进制造业百强市(2021)榜单“出炉”")
    assert art.text.endswith("全国首座“灯塔工厂”应用示范")
    assert art.text.count("五个维度27项指标") == 1
    p = art.paragraphs[-1]
    assert ws(p.text) == ws(pages["000"].text[p.start:p.end])


def test_an_ordinary_restatement_is_not_a_repeat():
    sentence = "市政府召开常务会议，研究部署全市重点工作，审议通过了有关文件和实施方案。"
    text = f"市政府召开常务会议\n\n本报讯（记者 张三）{sentence}会议强调要抓好落实。\n\n会议指出，{sentence}\n"
    (art,) = parse_text(text, source="x.txt", checksum="0", encoding="utf-8").articles
    assert art.text.endswith("会议指出，" + sentence)


# --- dates inferred from the page's own text (issue 11, point 6) ----------------------------------

@pytest.mark.parametrize("key, date, quoted", [
    ("002", "2022-12-14", ["“12月14日”", "2022年"]),  # '将于12月15日' is announced, not reported
    ("004", "2021-08-18", ["“8月18日”", "市政府2021年第15次常务会议"]),
])
def test_dates_inferred_from_the_text(pages, key, date, quoted):
    issue = pages[key].issue
    assert (issue.date, issue.date_source) == (date, "inferred")
    assert all(q in issue.date_evidence for q in quoted), issue.date_evidence
    assert "不早于" in issue.date_evidence  # a lower bound, said as one


def test_printed_dates_carry_no_evidence_and_win(pages, tmp_path):
    assert pages["000"].issue.date_evidence is None
    page_path = tmp_path / P004.name
    shutil.copy(P004, page_path)
    (tmp_path / (P004.name + ".meta.json")).write_text('{"date": "2021-08-19"}', encoding="utf-8")
    issue = parse_page(page_path).issue
    assert (issue.date, issue.date_source, issue.date_evidence) == ("2021-08-19", "sidecar", None)


def test_no_year_named_means_no_inferred_date():
    text = "市委召开会议\n\n本报讯（记者 张三）11月29日，市委召开会议。\n"
    assert parse_text(text, source="x.txt", checksum="0", encoding="utf-8").issue.date is None
    # Two years named equally often: unsure, so nothing.
    text = "市委召开会议\n\n本报讯（记者 张三）11月29日，会议回顾2021年，展望2022年。\n"
    assert parse_text(text, source="x.txt", checksum="0", encoding="utf-8").issue.date is None


def test_a_page_body_bounds_its_masthead_date_from_below():
    # 001's body alone (masthead cut off) infers the day before the printed 2023-12-21.
    text = P001.read_text(encoding="utf-8")
    body = text[text.index("## 习近平会见俄罗斯总理米舒斯京"):]
    issue = parse_text(body, source="x.txt", checksum="0", encoding="utf-8").issue
    assert (issue.date, issue.date_source) == ("2023-12-20", "inferred")


# A story for the pages below to open with: headline, byline, body.
_ROAD_STORY = "市区道路改造工程完工\n本报讯（记者 王五）5月30日，市区道路改造工程全部完工。\n"


def _story_after_the_road_story(tail: str):
    """The second article of `_ROAD_STORY` + `tail`, once the first has kept its own headline."""
    first, second = parse_text(_ROAD_STORY + tail, source="x.txt", checksum="0", encoding="utf-8").articles
    assert first.headline == "市区道路改造工程完工"
    return second


def test_an_exclaimed_headline_above_a_byline_and_a_credit_line_that_ends_a_story():
    """Web-sourced stories exclaim in headlines and end in credit lines: the exclaimed line right
    above a byline is the next story's headline, and the credit line stays with the story it ends
    (it never opens a heading group)."""
    second = _story_after_the_road_story("改造后通行时间缩短一半。\n"
                                         "编辑：张三\n"
                                         "\n"
                                         "暴雨突袭！ 城区多处积水\n"
                                         "本报讯（记者 李四）6月1日，城区遭遇强降雨，多处路段积水。\n"
                                         "市排水部门连夜抢排。\n")
    assert (second.kicker, second.headline, second.subtitle) == (None, "暴雨突袭！ 城区多处积水", None)
    assert "编辑：张三" not in (second.headline or "") + (second.kicker or "")


def test_a_source_line_below_a_headline_stays_in_its_heading():
    """A credit line only never *opens* a heading group: below a headline ('来源：新华社') it
    belongs to that story's heading, and the headline is not taken for the last story's."""
    second = _story_after_the_road_story("\n"
                                         "湘江两岸灯光秀今晚亮灯\n"
                                         "来源：新华社\n"
                                         "今晚起，湘江两岸将上演灯光秀，市民可在沿江风光带观赏。\n")
    assert second.headline == "湘江两岸灯光秀今晚亮灯"
