"""understand: a reader's question (and the conversation before it) → a `Query` for retrieval.

Finds the publication-date range and issue number the question names, and resolves follow-ups
("他还强调了什么？", "双方在哪些领域合作？", "那2023年呢？") against the earlier turns: the previous
question plus the names (people, places, organisations; jieba part-of-speech tags) that the
conversation and the last answer carried.

Usage::

    q = understand("第18012号衡阳日报报道的百强市榜单中衡阳排第几？")
    q.issue            # '18012'
    q = understand("那2023年呢？", history=[Turn("user", "2021年11月30日衡阳日报头版讲了什么？")])
    q.search_text      # '2023年衡阳日报头版讲了什么？'
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

import jieba.posseg as _pseg

from qa.lexical import _ensure_jieba, fold, simplified
from qa.validate import half_width

_CN_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}

FULL_DATE = re.compile(r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})\s*[日号]?(?!\d)")
YEAR_MONTH = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?!\s*\d{1,2}\s*[日号])")
MONTH_DAY = re.compile(r"(?<![\d年])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
YEAR = re.compile(r"(\d{4})\s*年")
ISSUE_NO = re.compile(r"第\s*(\d{3,7})\s*[号期]")
# A date is the paper's own day when the paper follows it ('2021年11月30日的衡阳日报头版',
# '…日报道的', '…那一期'); otherwise it dates an event, which a daily reports that day or in the days
# after ('11月29日晚习近平出席…' is on the front page of 11-30; so is '据衡阳日报，11月29日…'), so
# those days are searched too.
REPORTED_WITHIN_DAYS = 3
_OF_THE_PAPER = re.compile(r"\s*(?:的|出版的|刊发的|刊登的)?\s*(?:《?[\u4e00-\u9fff]{0,4}[日晚]报》?|报纸|本报|报上|报道|刊登|刊发"
                           r"|出版|头版|头条|要闻|[第一二三四五六七八九十\d]{1,3}版|版面|[那这该本当此]一?期|第\s*\d+\s*[号期])")

# A follow-up leans on the previous turn: pronouns, "还/那…呢", or no content of its own.
_FOLLOW_UP = re.compile(r"^(那|那么|那在|还有|另外|此外|然后|他|她|它|他们|她们|该|这|此|其)|[他她它]们?(还|又|也)|呢[？?]?$")


# Words that point back at what the conversation was about.
_ANAPHORA = frozenset("""双方 对方 两者 二者 两国 两地 两家 上述 前述 该 此 其 他 她 它 他们 她们 它们 这 那 这些 那些
    这个 那个 这家 这位 这项 这次 此次 此项 该项 其中 本次 当时 这里 那里 当地""".split())
_PROPER = frozenset({"nr", "nrfg", "nrt", "ns", "nt", "nz", "j"})  # jieba tags of names


@dataclass
class Turn:
    role: str  # 'user' | 'assistant'
    content: str


@dataclass
class Query:
    question: str  # as asked
    search_text: str  # with the conversation resolved in
    date_from: str | None = None  # ISO, inclusive
    date_to: str | None = None
    issue: str | None = None
    follow_up: bool = False


def _iso(y: int, m: int, d: int) -> str | None:
    if not (1 <= m <= 12) or not (1 <= d <= calendar.monthrange(y, m)[1]):
        return None
    return f"{y:04d}-{m:02d}-{d:02d}"


def date_range(text: str, year_hint: int | None = None) -> tuple[str | None, str | None]:
    """The publication-date range a text names: a full date, a year+month, or a month+day when
    the year is known from the conversation. A bare year is not a filter (it usually dates an
    event, not the paper). Usage: ``date_range("2021年11月")`` → ('2021-11-01', '2021-11-30')"""
    m = FULL_DATE.search(text)
    if m:
        iso = _iso(int(m[1]), int(m[2]), int(m[3]))
        if iso:
            return iso, iso
    m = YEAR_MONTH.search(text)
    if m:
        y, mo = int(m[1]), int(m[2])
        if 1 <= mo <= 12:
            return f"{y:04d}-{mo:02d}-01", f"{y:04d}-{mo:02d}-{calendar.monthrange(y, mo)[1]:02d}"
    m = MONTH_DAY.search(text)
    if m and year_hint:
        iso = _iso(year_hint, int(m[1]), int(m[2]))
        if iso:
            return iso, iso
    return None, None


def issue_number(text: str) -> str | None:
    """The issue number a text names (`第18012号` or `第１８０１２号` → '18012'), else None."""
    m = ISSUE_NO.search(text)
    return half_width(m[1]) if m else None


def _is_follow_up(question: str, words: list[tuple[str, str]]) -> bool:
    q = question.strip()
    if _FOLLOW_UP.search(q) or len(re.sub(r"[\W\d_]", "", q)) <= 6:
        return True
    if any(w in _ANAPHORA for w, _ in words):  # '双方在哪些领域合作？', '该平台…'
        return True
    # A short question that names nobody and nothing of its own ('哪位副总理出席并讲话？').
    return len(re.sub(r"[\W\d_]", "", q)) <= 14 and not subjects(words) and not (
        FULL_DATE.search(q) or YEAR_MONTH.search(q) or ISSUE_NO.search(q))


def tagged(text: str) -> list[tuple[str, str]]:
    """(word, part-of-speech) pairs by jieba, with the archive's local-names dictionary loaded.

    Usage: ``tagged("秦国文会见高崖")`` → [('秦国文', 'nr'), ('会见', 'n'), ('高崖', 'n')]"""
    _ensure_jieba()
    return [(p.word, p.flag) for p in _pseg.cut(fold(text))]


def subjects(words: list[tuple[str, str]]) -> list[str]:
    """The names a text is about: runs of nouns that hold a proper name (person, place,
    organisation, other proper noun or abbreviation), e.g. '长江生态环保集团有限公司湖南区域公司总经理高崖'.

    Usage: ``subjects(tagged("双方在长江大保护等领域合作"))``"""
    out: list[str] = []
    run: list[tuple[str, str]] = []
    for word, flag in [*words, ("", "x")]:
        if (flag[:1] == "n" and flag != "ng" or flag == "j") and word not in _ANAPHORA:
            run.append((word, flag))
            continue
        if any(f in _PROPER for _, f in run):
            name = "".join(w for w, _ in run)
            if name not in out:
                out.append(name)
        run = []
    return out


def _swap_year(previous: str, year: str) -> str:
    """The earlier question's date or year becomes the year the follow-up asks about."""
    for pattern in (FULL_DATE, YEAR_MONTH, YEAR):
        if pattern.search(previous):
            return pattern.sub(f"{year}年", previous, count=1)
    return f"{year}年 {previous}"


def understand(question: str, history: list[Turn] | None = None) -> Query:
    """Resolve the question against the conversation; extract date and issue filters.

    Each earlier user turn is itself resolved against the turns before it, so a chain of
    follow-ups keeps the subject the conversation started with."""
    question = simplified(question.strip())
    turns = [Turn(t.role, simplified(t.content)) for t in (history or []) if t.content.strip()]
    users = [i for i, t in enumerate(turns) if t.role == "user"]
    years = [int(y) for t in turns if t.role == "user" for y in YEAR.findall(t.content)]
    years += [int(y) for y in YEAR.findall(question)]
    year_hint = years[-1] if years else None
    if not users:
        return _query(question, question, year_hint)
    last = users[-1]
    previous = understand(turns[last].content, turns[:last])
    answer = " ".join(t.content for t in turns[last + 1:] if t.role == "assistant")
    words = tagged(question)
    if not _is_follow_up(question, words):
        return _query(question, question, year_hint)
    year = YEAR.search(question)
    if year and not FULL_DATE.search(question) and len(question) <= 12:
        search_text = _swap_year(previous.search_text, year[1])  # '那2023年呢？'
    else:
        search_text = f"{_topic(previous, answer)} {question}"
    query = _query(question, search_text, year_hint)
    query.follow_up = True
    if query.date_from is None and query.issue is None and not year:
        # The follow-up stays in the issue or day the conversation was about; one that names
        # its own year ('那2023年呢？') moves away from it.
        query.date_from, query.date_to, query.issue = previous.date_from, previous.date_to, previous.issue
    return query


def _query(question: str, search_text: str, year_hint: int | None) -> Query:
    date_from, date_to = date_range(question, year_hint=year_hint)
    if date_to and not names_the_paper(question):  # an event's date: reported in the days after
        date_to = _days_after(date_to, REPORTED_WITHIN_DAYS)
    return Query(question=question, search_text=search_text, date_from=date_from, date_to=date_to,
                 issue=issue_number(question))


def names_the_paper(question: str) -> bool:
    """Whether the date the question names is the paper's own (the paper follows it), not an
    event's. Usage: ``names_the_paper("2021年11月30日的衡阳日报头版…")`` → True"""
    dated = [m for p in (FULL_DATE, YEAR_MONTH, MONTH_DAY) if (m := p.search(question))]
    return any(_OF_THE_PAPER.match(question, m.end()) for m in dated)


def _days_after(iso: str, days: int) -> str:
    try:
        return str(date.fromisoformat(iso) + timedelta(days=days))
    except (OverflowError, ValueError):  # past 9999-12-31, or year 0 (no date of the calendar)
        return iso


_MARKERS = re.compile(r"\[\d+\]")


def _topic(previous: Query, answer: str) -> str:
    """What the conversation was last about: the previous question as asked, plus the names
    (people, places, organisations) that the turns before it carried in and that the answer to it
    brought up. Measured on tests/followups.py: the previous question alone and question + names
    both found 12 of 14; names alone 11 (POS tags cut names badly); this form 12, and it stays
    short however long the chain of follow-ups grows."""
    carried = subjects(tagged(previous.search_text)) + subjects(tagged(_MARKERS.sub("", answer)[:120]))[:3]
    extra = [n for n in dict.fromkeys(carried) if n not in previous.question]
    return " ".join([previous.question, *extra])
