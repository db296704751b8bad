"""validate: the checks on search filters that the API and the CLI share, so both accept and
refuse the same dates, top-k values and issue numbers with the same messages.

Usage::

    check_date("2021-11-30")            # '2021-11-30'; ValueError for '2021/11/30' or '2021-02-30'
    check_date_range("2021-12-01", "2021-11-01")   # ValueError: the range is reversed
    check_issue("第18012号")            # '18012' (full-width digits too: '１８０１２')
    check_top_k(5)                      # 5; ValueError outside TOP_K_MIN..TOP_K_MAX
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

TOP_K_MIN, TOP_K_MAX = 1, 50
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISSUE = re.compile(r"^第?\s*(\d{1,10})\s*[号期]?$")


def half_width(text: str) -> str:
    """`text` with full-width digits, letters and signs as their ASCII forms (NFKC): input
    methods type '２０２１－１１－３０' and '第１８０１２号', stored dates and issue numbers hold ASCII.

    Usage: ``half_width("第１８０１２号")`` → '第18012号'"""
    return unicodedata.normalize("NFKC", text)


def check_date(value: str | None) -> str | None:
    """A YYYY-MM-DD date that exists, or None for no date (None or '')."""
    if value is None or value == "":
        return None
    given, value = value, half_width(value)  # '２０２１－１１－３０' as an input method types it
    if not _DATE.match(value):
        raise ValueError(f"dates are YYYY-MM-DD, not {given!r}")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{given} is not a date in the calendar") from None
    return value


def check_date_range(date_from: str | None, date_to: str | None) -> None:
    """Refuse a range whose start is after its end (it could only ever match nothing)."""
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"the date range is reversed: from {date_from} is after to {date_to}")


def check_issue(value: str | None) -> str | None:
    """The issue number as printed ('18012'; '第18012号' is accepted too), or None."""
    if value is None or not value.strip():
        return None
    m = _ISSUE.match(half_width(value.strip()))
    if not m:
        raise ValueError(f"issue numbers are digits as printed on the masthead, e.g. 18012, not {value!r}")
    return m.group(1)


def check_top_k(value: int) -> int:
    """How many passages to return: TOP_K_MIN..TOP_K_MAX."""
    if not TOP_K_MIN <= value <= TOP_K_MAX:
        raise ValueError(f"top-k must be between {TOP_K_MIN} and {TOP_K_MAX}, not {value}")
    return value
