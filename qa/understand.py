"""understand: a reader's question (and the conversation before it) → a `Query` for retrieval.

Finds the publication-date range and issue number the question names, and resolves follow-ups
("他还强调了什么？", "那2023年呢？") against the earlier turns.

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

_CN_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}

FULL_DATE = re.compile(r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})\s*[日号]?(?!\d)")
YEAR_MONTH = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?!\s*\d{1,2}\s*[日号])")
MONTH_DAY = re.compile(r"(?<![\d年])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
YEAR = re.compile(r"(\d{4})\s*年")
ISSUE_NO = re.compile(r"第\s*(\d{3,7})\s*[号期]")

# A follow-up leans on the previous turn: pronouns, "还/那…呢", or no content of its own.
_FOLLOW_UP = re.compile(r"^(那|那么|那在|还有|另外|此外|然后|他|她|它|他们|她们|该|这|此|其)|[他她它]们?(还|又|也)|呢[？?]?$")


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
    """The issue number a text names (`第18012号` → '18012'), else None."""
    m = ISSUE_NO.search(text)
    return m[1] if m else None


def _is_follow_up(question: str) -> bool:
    q = question.strip()
    return bool(_FOLLOW_UP.search(q)) or len(re.sub(r"[\W\d_]", "", q)) <= 6


def _swap_year(previous: str, year: str) -> str:
    """The earlier question's date or year becomes the year the follow-up asks about."""
    for pattern in (FULL_DATE, YEAR_MONTH, YEAR):
        if pattern.search(previous):
            return pattern.sub(f"{year}年", previous, count=1)
    return f"{year}年 {previous}"


def understand(question: str, history: list[Turn] | None = None) -> Query:
    """Resolve the question against the conversation; extract date and issue filters."""
    question = question.strip()
    users = [t.content.strip() for t in (history or []) if t.role == "user" and t.content.strip()]
    previous = users[-1] if users else None
    search_text = question
    follow_up = bool(previous) and _is_follow_up(question)
    if follow_up:
        year = YEAR.search(question)
        if year and not FULL_DATE.search(question) and len(question) <= 12:
            search_text = _swap_year(previous, year[1])  # '那2023年呢？'
        else:
            search_text = f"{previous} {question}"
    context = " ".join(users + [question])
    years = [int(y) for y in YEAR.findall(context)]
    date_from, date_to = date_range(question, year_hint=years[-1] if years else None)
    issue = issue_number(question)
    if follow_up and date_from is None and issue is None and not YEAR.search(question):
        # The follow-up stays in the issue or day the conversation was about; one that names
        # its own year ('那2023年呢？') moves away from it.
        date_from, date_to = date_range(search_text, year_hint=years[-1] if years else None)
        issue = issue_number(search_text)
    return Query(question=question, search_text=search_text, date_from=date_from, date_to=date_to,
                 issue=issue, follow_up=follow_up)
