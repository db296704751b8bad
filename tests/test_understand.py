"""Question understanding: dates, issue numbers, follow-ups."""

from qa.understand import Turn, date_range, issue_number, understand


def test_full_date_month_and_issue_number_become_filters():
    assert date_range("2021年11月30日的衡阳日报头版") == ("2021-11-30", "2021-11-30")
    assert date_range("2021年11月的报道") == ("2021-11-01", "2021-11-30")
    assert date_range("2024年2月") == ("2024-02-01", "2024-02-29")
    assert issue_number("第18012号衡阳日报") == "18012"


def test_bare_year_or_month_day_without_a_year_is_not_a_filter():
    assert date_range("2022年1至10月，衡阳有多少项经济指标") == (None, None)
    assert date_range("11月29日市政协召开的大会") == (None, None)
    assert date_range("11月29日市政协召开的大会", year_hint=2021) == ("2021-11-29", "2021-11-29")
    assert date_range("2021年2月30日") == (None, None)  # no such day


def test_follow_up_is_resolved_with_the_previous_question():
    history = [Turn("user", "秦国文在雁峰区调研时强调了什么？"), Turn("assistant", "……[1]")]
    q = understand("他还强调了什么？", history)
    assert q.follow_up and "秦国文" in q.search_text and "雁峰区" in q.search_text


def test_follow_up_naming_another_year_swaps_the_year():
    history = [Turn("user", "2021年衡阳有几个城市进入先进制造业百强？")]
    q = understand("那2023年呢？", history)
    assert q.search_text.startswith("2023年") and "先进制造业百强" in q.search_text


def test_follow_up_keeps_the_issue_the_conversation_is_about():
    history = [Turn("user", "第18012号衡阳日报头版有哪些报道？")]
    q = understand("还有别的吗？", history)
    assert q.issue == "18012"


def test_a_standalone_question_ignores_history():
    history = [Turn("user", "秦国文在雁峰区调研时强调了什么？")]
    q = understand("市政府2021年第15次常务会议原则通过了哪部条例草案？", history)
    assert not q.follow_up and "雁峰区" not in q.search_text
