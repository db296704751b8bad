"""Citation and issue lookup: `GET /api/citations/{chunk_id}` (a passage in its article),
`GET /api/issues` and `GET /api/issues/{issue_id}` (browsing the archive).

Usage::

    app.include_router(lookup.router)
"""

from __future__ import annotations

import re

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa.api.errors import error_responses
from qa.api.search import DateFiltered
from qa.api.services import Services, get_services
from qa.lookup import citation_detail, issue_detail, issue_list
from qa.retrieve import Citation
from qa.validate import check_issue

router = APIRouter(tags=["lookup"])
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
ISSUES_MAX = 1000  # issues per page of GET /api/issues


# -- models (open to fields the lookup adds later: they pass through) ---------------------------------
class IssueFields(BaseModel):
    """One page of one issue, with what its masthead or sidecar gave (null when unknown)."""

    model_config = ConfigDict(extra="allow")
    id: str
    paper: str | None
    date: str | None = Field(..., description="YYYY-MM-DD, or null when nothing gives it.")
    date_source: str | None = Field(..., description="Where the date came from: 'masthead', 'sidecar', "
                                                     "'filename' or 'inferred'.")
    date_evidence: str | None = Field(None, description="The text the date was read from, when known.")
    issue: str | None = Field(..., description="Issue number as printed (期号).")
    page: int | None
    page_count: int | None
    weekday: str | None
    source: str = Field(..., description="The page's name in the archive (its path below the ingested folder).")


class ArticleSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    headline: str | None
    byline: str | None
    passages: int = Field(..., description="How many passages the article has.")


class IssueSummary(IssueFields):
    articles: list[ArticleSummary]


class IssueList(BaseModel):
    issues: list[IssueSummary]
    total: int = Field(..., description="How many issues match the filters.")
    next_offset: int | None = Field(..., description="`offset` of the next page of issues; null on the last.")


class IssueQuery(DateFiltered):
    """Which issues `GET /api/issues` lists: a date range, an issue number, a page of them."""

    issue: str | None = Field(None, description="Only this issue number, as printed.", examples=["18012"])
    limit: int = Field(100, ge=1, le=ISSUES_MAX, description=f"Issues per page, 1-{ISSUES_MAX}.")
    offset: int = Field(0, ge=0, description="How many issues to skip (the `next_offset` of the page before).")

    _issue = field_validator("issue")(check_issue)


class ArticleFields(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    headline: str | None
    kicker: str | None
    subtitle: str | None
    byline: str | None
    dateline: str | None
    continuations: list[str] = []
    start: int = Field(..., description="Where the article starts in the page text.")
    end: int


class PassageSpan(BaseModel):
    id: str
    text: str
    start: int
    end: int


class ArticleWithPassages(ArticleFields):
    passages: list[PassageSpan]


class IssueDetail(IssueFields):
    articles: list[ArticleWithPassages]


class ArticleText(ArticleFields):
    text: str = Field(..., description="The whole article.")


class Span(BaseModel):
    start: int
    end: int


class CitationDetail(BaseModel):
    chunk_id: str
    text: str
    citation: Citation
    issue: IssueFields
    article: ArticleText
    highlight: Span | None = Field(..., description="Where the passage stands in `article.text`.")
    previous: str | None = Field(..., description="The article's previous passage id, if any.")
    next: str | None = Field(..., description="The article's next passage id, if any.")


# -- routes -----------------------------------------------------------------------------------------
def _found(lookup, store, key: str, what: str) -> dict:
    # Ids are checked for shape first; they only ever reach the store as SQL parameters.
    data = lookup(store, key) if _SAFE_ID.match(key) else None
    if data is None:
        raise HTTPException(404, f"no {what} with id {key!r}")
    return data


@router.get("/api/citations/{chunk_id}", response_model=CitationDetail, summary="Open a cited passage",
            responses=error_responses(401, 404, 500))
def citation(chunk_id: str, svc: Services = Depends(get_services)):
    """A passage, its citation, the whole article with the highlight offsets, and its neighbours."""
    return _found(citation_detail, svc.archive.store, chunk_id, "passage")


@router.get("/api/issues", response_model=IssueList, summary="List issues",
            responses=error_responses(401, 422, 500))
def issues(q: Annotated[IssueQuery, Query()], svc: Services = Depends(get_services)):
    """The archive's pages with their issue metadata and their articles, by date (undated last),
    `limit` at a time: an archive of decades holds tens of thousands. `date_from`, `date_to`
    and `issue` narrow the list; `total` counts all that match, `next_offset` asks for the rest."""
    store = svc.archive.store
    total = store.count_issues(q.date_from, q.date_to, q.issue)
    listed = issue_list(store, q.date_from, q.date_to, q.issue, q.limit, q.offset)
    after = q.offset + len(listed)
    return {"issues": listed, "total": total, "next_offset": after if after < total else None}


@router.get("/api/issues/{issue_id}", response_model=IssueDetail, summary="One issue",
            responses=error_responses(401, 404, 500))
def issue(issue_id: str, svc: Services = Depends(get_services)):
    """One issue (page) with its articles and each article's passages."""
    return _found(issue_detail, svc.archive.store, issue_id, "issue")
