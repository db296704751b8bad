"""lookup: issue browsing and citation lookup — what `qa issues/show` print and the
`/api/issues` and `/api/citations/{id}` routes return.

Usage::

    issue_list(store)                       # [{"id", "paper", "date", ..., "articles": [...]}]
    issue_detail(store, "000_72e2c7496de26bfa")
    citation_detail(store, chunk_id)        # passage + citation + whole article + highlight
"""

from __future__ import annotations

import re

from qa.cite import make_citation
from qa.store import ArticleRow, IssueRow, Store

_WS = re.compile(r"\s+")


def _issue_fields(issue: IssueRow) -> dict:
    return {"id": issue.id, "paper": issue.paper, "date": issue.date, "date_source": issue.date_source,
            "date_evidence": issue.date_evidence, "issue": issue.issue_no, "page": issue.page,
            "page_count": issue.page_count, "weekday": issue.weekday, "source": issue.source}


def _article_fields(a: ArticleRow) -> dict:
    return {"id": a.id, "headline": a.headline, "kicker": a.kicker, "subtitle": a.subtitle,
            "byline": a.byline, "dateline": a.dateline, "continuations": a.continuations,
            "start": a.start, "end": a.end}


def issue_list(store: Store, date_from: str | None = None, date_to: str | None = None,
               issue_no: str | None = None, limit: int | None = None, offset: int = 0) -> list[dict]:
    """The issues `store.issues` gives for these filters (all by default), each with its articles
    (`passages` = how many passages each has), in two statements whatever their number.

    Usage: ``issue_list(store, "2021-11-01", "2021-11-30", limit=100)``"""
    issues = store.issues(date_from, date_to, issue_no, limit, offset)
    articles = store.article_summaries([i.id for i in issues])
    return [_issue_fields(i) | {"articles": [{"id": a, "headline": h, "byline": b, "passages": n}
                                             for a, h, b, n in articles[i.id]]}
            for i in issues]


def issue_detail(store: Store, issue_id: str) -> dict | None:
    """One issue with its articles and each article's passages (id, text, start, end)."""
    issue = store.issue(issue_id)
    if issue is None:
        return None
    arts = []
    for a in store.articles(issue_id):
        passages = [{"id": p.id, "text": p.text, "start": p.start, "end": p.end}
                    for p in store.passages_of_article(a.id)]
        arts.append(_article_fields(a) | {"passages": passages})
    return _issue_fields(issue) | {"articles": arts}


def highlight(article_text: str, passage_text: str) -> tuple[int, int] | None:
    """[start, end) of the passage inside the article text, ignoring whitespace differences."""
    target = _WS.sub("", passage_text)
    if not target:
        return None
    # Map positions of the whitespace-free article text back to the article text.
    keep = [i for i, ch in enumerate(article_text) if not ch.isspace()]
    flat = "".join(article_text[i] for i in keep)
    at = flat.find(target)
    if at < 0:
        return None
    return keep[at], keep[at + len(target) - 1] + 1


def citation_detail(store: Store, chunk_id: str) -> dict | None:
    """A passage, its citation, the whole article, the highlight and the neighbouring passages."""
    found = store.passages_by_id([chunk_id]).get(chunk_id)
    if found is None:
        return None
    issue = store.issue(found.issue_id)
    article = store.article(found.article_id)
    if issue is None or article is None:
        return None
    text = article.body
    siblings = store.passages_of_article(article.id)
    idx = next((i for i, p in enumerate(siblings) if p.id == chunk_id), None)
    if idx is None:  # the page was replaced between these reads
        return None
    span = highlight(text, found.text)
    return {
        "chunk_id": chunk_id,
        "text": found.text,
        "citation": make_citation(issue, article, found).to_dict(),
        "issue": _issue_fields(issue),
        "article": _article_fields(article) | {"text": text},
        "highlight": {"start": span[0], "end": span[1]} if span else None,
        "previous": siblings[idx - 1].id if idx > 0 else None,
        "next": siblings[idx + 1].id if idx + 1 < len(siblings) else None,
    }
