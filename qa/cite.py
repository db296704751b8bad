"""cite: where a passage stands in the archive, as a `Citation` — a short label for the reader and
a GB/T 7714-2015 reference for a bibliography.

Usage::

    c = make_citation(store.issue(p.issue_id), store.article(p.article_id), p)
    c.label     # '《衡阳日报》2023年12月21日 第18730号 第1版《学习贯彻习近平总书记重要讲话指示精神》'
    c.gbt7714   # '陈润. 学习贯彻习近平总书记重要讲话指示精神[N]. 衡阳日报, 2023-12-21(1).'

Nothing is invented: what the page does not state is left out, and a date the page does not print
is marked — （推断） in the label, square brackets in the GB/T 7714 reference, which is how the
standard writes a date supplied by the cataloguer rather than read from the source (§8.4).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from qa.store import ArticleRow, IssueRow, PassageRow

PRINTED_DATE_SOURCES = ("masthead", "sidecar")  # any other date source is an inference
GBT_MAX_AUTHORS = 3  # GB/T 7714-2015 §8.1.2: list three, then '等'

# Who wrote it: the names after each role in a byline ('本报讯(记者 唐海强 罗文鹏)',
# '本报记者 胡建军 通讯员 唐兰荣', '衡阳日报讯(全媒体记者 陈润 邓小山)').
_ROLE = re.compile(r"(?:全媒体|特约|首席|摄影)?(?:记者|通讯员|实习生)")
_NAME = re.compile(r"[\u4e00-\u9fff·]{2,4}")
_NAME_SEPARATORS = re.compile(r"[\s、，,]+")


@dataclass
class Citation:
    """Where a passage stands in the archive. Unknown fields are None, never guessed."""

    paper: str | None
    date: str | None
    date_source: str | None
    issue: str | None
    page: int | None
    headline: str | None
    byline: str | None
    source: str
    start: int
    end: int
    label: str
    date_evidence: str | None = None  # why an unprinted date was chosen (see `Issue.date_evidence`)
    gbt7714: str | None = None  # the GB/T 7714-2015 reference: see `gbt7714_reference`

    def to_dict(self) -> dict:
        return asdict(self)


def date_is_printed(issue: IssueRow) -> bool:
    return issue.date_source in PRINTED_DATE_SOURCES


def chinese_date(iso: str) -> str:
    """'2021-11-30' → '2021年11月30日'. Usage: ``chinese_date(issue.date)``"""
    y, m, d = (int(x) for x in iso.split("-"))
    return f"{y}年{m}月{d}日"


def citation_label(issue: IssueRow, headline: str | None) -> str:
    """'《衡阳日报》2021年11月30日 第18012号 第1版《headline》', leaving out what is unknown.

    Usage: ``citation_label(store.issue(id), "习近平会见…")``"""
    parts = []
    if issue.paper:
        parts.append(f"《{issue.paper}》")
    if issue.date:
        parts.append(chinese_date(issue.date) + ("" if date_is_printed(issue) else "（推断）"))
    if issue.issue_no:
        parts.append(f"第{issue.issue_no}号")
    if issue.page:
        parts.append(f"第{issue.page}版")
    paper = parts.pop(0) if issue.paper else ""
    label = paper + " ".join(parts) if (paper or parts) else issue.source
    if headline:
        label += f"《{headline}》"
    return label


def byline_authors(byline: str | None) -> list[str]:
    """The personal names in a byline, in order; [] when it names none ('本报评论员').

    Usage: ``byline_authors("本报记者 胡建军 通讯员 唐兰荣")  # ['胡建军', '唐兰荣']``"""
    if not byline:
        return []
    inner = re.sub(r"^[^（(]*讯\s*[（(]|[）)]\s*$", "", byline.strip())  # '本报讯（…）' → its brackets
    pieces = _ROLE.split(inner)
    names: list[str] = []
    for piece in pieces[1:]:  # text before the first role ('本报') names no one
        for token in _NAME_SEPARATORS.split(piece.strip()):
            if _NAME.fullmatch(token) and token not in names:
                names.append(token)
    return names


def gbt7714_reference(issue: IssueRow, headline: str | None, byline: str | None) -> str:
    """A newspaper-article reference per GB/T 7714-2015: 'Authors. Title[N]. Paper, Date(Page).'

    Unknown parts are left out; an inferred date is put in square brackets.
    Usage: ``gbt7714_reference(issue, "学习贯彻…", "衡阳日报讯(全媒体记者 陈润)")``"""
    authors = byline_authors(byline)
    head = ", ".join(authors[:GBT_MAX_AUTHORS]) + (", 等" if len(authors) > GBT_MAX_AUTHORS else "")
    title = f"{headline}[N]" if headline else "[N]"
    where = []
    if issue.paper:
        where.append(issue.paper)
    if issue.date:
        date = issue.date if date_is_printed(issue) else f"[{issue.date}]"
        where.append(date + (f"({issue.page})" if issue.page else ""))
    ref = f"{head}. {title}" if head else title
    return f"{ref}. {', '.join(where)}." if where else f"{ref}."


def make_citation(issue: IssueRow, article: ArticleRow | None, passage: PassageRow) -> Citation:
    """The citation of `passage` (of `article`, in `issue`). Usage: ``make_citation(issue, article, p)``"""
    headline = article.headline if article else None
    byline = article.byline if article else None
    return Citation(
        paper=issue.paper, date=issue.date, date_source=issue.date_source, issue=issue.issue_no,
        page=issue.page, headline=headline, byline=byline, source=issue.source,
        start=passage.start, end=passage.end, label=citation_label(issue, headline),
        date_evidence=issue.date_evidence, gbt7714=gbt7714_reference(issue, headline, byline),
    )
