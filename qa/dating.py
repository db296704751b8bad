"""dating: a page's date inferred from its own text, for pages with no masthead, sidecar or
dated file name. Part of the parse stage.

Usage::

    found = infer_date("……市长朱健主持召开市政府2021年第15次常务会议……8月18日下午……")
    found.date, found.evidence   # '2021-08-18', '正文所报最晚日期“8月18日”，年份取自“…2021年第15次常务会议…”；…'

A newspaper reports what has already happened, so the latest event date a page reports is a
lower bound of its publication date (usually the day before it, or the day itself). That bound
is what is inferred, and the evidence says so. Announced events ('将于12月15日', '明年1月1日起')
are not reports and do not count. An event without a year takes the page's year: the year the
page names most often (a meeting's ordinal '2021年第15次' and a full date count double). When
no year is named, or two years are named equally often, nothing is inferred: never a guess.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date as Date

# '8月18日', '2021年8月18日', '12月12日—13日' (a range ends on its last day), '北京12月14日电'
_EVENT = re.compile(
    r"(?:(?P<y>(?:19|20)\d{2})\s*年\s*)?(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    r"(?:\s*[—–\-至到~～]\s*(?P<d2>\d{1,2})\s*日)?"
)
_YEAR = re.compile(r"(?P<y>(?:19|20)\d{2})\s*年(?!\s*\d{1,2}\s*月\s*\d{1,2}\s*日)")
_STRONG_YEAR = re.compile(r"\s*第\s*[\d一二三四五六七八九十]+\s*[次届期号]")  # '2021年第15次常务会议'
# Before an announced (future) date / after a deadline or a starting day.
_AHEAD_BEFORE = re.compile(r"(?:将于|将在|将|拟于|拟|定于|计划于|计划|预计|预定|明年|后年|下月|到|至)\s*$")
_AHEAD_AFTER = re.compile(r"^\s*(?:前|之前|以前|起|开始|止)")
_CLAUSE = re.compile(r"[，,。；;！？!?：:、\n“”\"（）()]")
_QUOTE_MAX = 24


@dataclass
class InferredDate:
    date: str  # ISO 'YYYY-MM-DD': the latest date the page reports, a lower bound of its own
    evidence: str  # what it was inferred from, quoted, for a reader


def infer_date(text: str, today: Date | None = None) -> InferredDate | None:
    """The page's date as the latest event it reports, with the evidence; None when unsure.

    Usage: ``infer_date(body_text)``"""
    today = today or Date.today()
    year = _page_year(text)
    best: tuple[Date, str, str | None] | None = None
    for m in _EVENT.finditer(text):
        if _announced(text, m):
            continue
        y = int(m.group("y")) if m.group("y") else (year[0] if year else None)
        if y is None:
            continue
        day = int(m.group("d2") or m.group("d"))
        try:
            when = Date(y, int(m.group("m")), day)
        except ValueError:
            continue
        if when > today:
            continue
        if best is None or when > best[0]:
            best = (when, m.group().strip(), None if m.group("y") else year[1])
    if best is None:
        return None
    when, event, year_quote = best
    evidence = f"正文所报最晚日期“{event}”"
    if year_quote:
        evidence += f"，年份取自“{year_quote}”"
    return InferredDate(when.isoformat(), evidence + "；出版日期不早于此日")


def _announced(text: str, m: re.Match) -> bool:
    return bool(_AHEAD_BEFORE.search(text[max(0, m.start() - 4):m.start()])
                or _AHEAD_AFTER.match(text[m.end():m.end() + 3]))


def _page_year(text: str) -> tuple[int, str] | None:
    """The year the page names most often, with a quote of its clearest mention; None on a tie."""
    votes: Counter[int] = Counter()
    quotes: dict[int, tuple[int, str]] = {}
    for m in _EVENT.finditer(text):
        if m.group("y") and not _announced(text, m):
            y = int(m.group("y"))
            votes[y] += 2
            quotes.setdefault(y, (2, _quote(text, m.start(), m.end())))
    for m in _YEAR.finditer(text):
        y = int(m.group("y"))
        strong = bool(_STRONG_YEAR.match(text, m.end()))
        votes[y] += 2 if strong else 1
        rank = 3 if strong else 1
        if rank > quotes.get(y, (0, ""))[0]:
            quotes[y] = (rank, _quote(text, m.start(), m.end()))
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    y = ranked[0][0]
    return y, quotes[y][1]


def _quote(text: str, start: int, end: int) -> str:
    """The clause around text[start:end], at most `_QUOTE_MAX` characters."""
    lo = start
    while lo > 0 and start - lo < _QUOTE_MAX // 2 and not _CLAUSE.match(text[lo - 1]):
        lo -= 1
    hi = end
    while hi < len(text) and hi - lo < _QUOTE_MAX and not _CLAUSE.match(text[hi]):
        hi += 1
    return text[lo:hi].strip()
