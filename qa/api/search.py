"""Search and ask: `POST /api/search` (passages with citations) and `POST /api/ask` (a cited
answer, as JSON or as Server-Sent Events).

Usage::

    app.include_router(search.router)
"""

from __future__ import annotations

import json
import logging
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from qa.api.errors import error_responses
from qa.api.services import Services, completed, get_services
from qa.retrieve import Citation
from qa.validate import TOP_K_MAX, TOP_K_MIN, check_date, check_date_range, check_issue

log = logging.getLogger("qa.api")
router = APIRouter()

TopK = Field(5, ge=TOP_K_MIN, le=TOP_K_MAX, description="How many passages to retrieve.")


# -- models -----------------------------------------------------------------------------------------
class DateFiltered(BaseModel):
    date_from: str | None = Field(None, description="Earliest publication date, YYYY-MM-DD.",
                                  examples=["2021-11-01"])
    date_to: str | None = Field(None, description="Latest publication date, YYYY-MM-DD (inclusive).",
                                examples=["2021-11-30"])

    _dates = field_validator("date_from", "date_to")(check_date)

    @model_validator(mode="after")
    def _range(self):
        check_date_range(self.date_from, self.date_to)
        return self


class SearchRequest(DateFiltered):
    query: str = Field(..., description="The question or keywords, in Chinese.",
                       examples=["衡阳在全国先进制造业百强市榜单中排第几？"])
    top_k: int = TopK
    issue: str | int | None = Field(None, description="Only this issue number, as printed "
                                    "(e.g. '18012' or 18012).", examples=["18012"])

    @field_validator("issue", mode="before")
    @classmethod
    def _issue(cls, value):
        # Before pydantic's own checks: they would word a wrong type as two union errors, and
        # their int would take `true` as issue 1.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise ValueError(f'issue numbers are digits, e.g. "18012" or 18012, not {json.dumps(value)}')
        return check_issue(value)


class SearchResult(BaseModel):
    chunk_id: str = Field(..., description="Passage id; `GET /api/citations/{chunk_id}` opens it in its article.")
    text: str = Field(..., description="The passage (at most 500 characters).")
    score: float = Field(..., description="Fused dense + BM25 score, 0..1; higher is better.")
    citation: Citation


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
    warning: str | SkipJsonSchema[None] = Field(None, exclude_if=lambda v: v is None,
                                                description="Only when the question names an issue or days "
                                                            "the archive lacks, so the results are of others "
                                                            "(in Chinese, for the reader).")


class Message(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str


class AskRequest(DateFiltered):
    question: str = Field(..., description="The question, in Chinese.", examples=["衡阳的云绩效平台哪天投入运行？"])
    history: list[Message] = Field(default_factory=list, max_length=50,
                                   description="Earlier turns of the conversation, oldest first.")
    top_k: int = TopK
    stream: bool = Field(False, description="Answer as Server-Sent Events instead of one JSON body.")


class CitedPassage(BaseModel):
    n: int = Field(..., description="The number of the answer's `[n]` marker that cites this passage.")
    chunk_id: str
    text: str
    citation: Citation


class AskResponse(BaseModel):
    answer: str = Field(..., description="The answer with `[n]` citation markers.")
    no_answer: bool = Field(..., description="True when the archive does not answer the question; "
                                             "`citations` then lists the closest passages.")
    citations: list[CitedPassage]
    # Present only when set, so the schema says `string`, not nullable. Excluding None per field
    # keeps the citations' null fields (paper, issue, page… of a page without a masthead).
    warning: str | SkipJsonSchema[None] = Field(None, exclude_if=lambda v: v is None,
                                                description="Only when there is something the reader must "
                                                            "know: the question names an issue or days the "
                                                            "archive lacks, so the answer comes from others "
                                                            "(in Chinese, for the reader), or the LLM failed "
                                                            "and the extractive answer was used.")


_ASK_STREAM = {
    "schema": {"type": "string", "description": "Server-Sent Events"},
    "example": 'event: citations\ndata: {"citations": [...], "no_answer": false}\n\n'
               'event: delta\ndata: {"text": "…"}\n\nevent: done\ndata: {"answer": "…", ...}\n\n',
}


# -- routes -----------------------------------------------------------------------------------------
@router.post("/api/search", response_model=SearchResponse, tags=["search"], summary="Search passages",
             responses=error_responses(400, 401, 413, 422, 500))
def api_search(req: SearchRequest, svc: Services = Depends(get_services)):
    """Passages that answer the query, best first, each with its issue citation.
    `date_from`, `date_to` and `issue` restrict the archive searched."""
    hits, caveat = svc.retriever.search_caveated(svc.question_text(req.query), req.top_k, date_from=req.date_from,
                                                 date_to=req.date_to, issue=req.issue)
    return {"query": req.query, "results": [h.to_dict() for h in hits], **({"warning": caveat} if caveat else {})}


@router.post("/api/ask", response_model=AskResponse, tags=["answer"], summary="Ask a question",
             responses={200: {"content": {"text/event-stream": _ASK_STREAM},
                              "description": "JSON, or with `stream: true` Server-Sent Events: "
                                             "`citations`, then `delta` pieces, then `done` (the JSON "
                                             "body) or `error`."},
                        **error_responses(400, 401, 413, 422, 500)})
async def api_ask(req: AskRequest, svc: Services = Depends(get_services)):
    """An extractive (or LLM-written) answer with `[n]` markers, and the passages it cites.
    With `history`, a follow-up question is resolved against the conversation."""
    question = svc.question_text(req.question)
    filters = dict(top_k=req.top_k, date_from=req.date_from, date_to=req.date_to)
    if not req.stream:
        result = await run_in_threadpool(svc.ask, question, req.history, **filters)
        return await run_in_threadpool(completed, result)

    async def events():
        result = None
        try:
            result = await run_in_threadpool(svc.ask, question, req.history, **filters)
            yield _event("citations", {"citations": [c.to_dict() for c in result.citations],
                                       "no_answer": result.no_answer})
            async for piece in iterate_in_threadpool(result.pieces):
                yield _event("delta", {"text": piece})
            yield _event("done", result.to_dict())  # only now is the answer complete
        except Exception as exc:  # an error mid-stream is an event, not a dropped connection
            log.exception("ask stream failed")
            yield _event("error", {"message": f"internal error ({type(exc).__name__}); "
                                              "the answer could not be completed"})
        finally:  # a reader who went away must not keep the LLM upstream open
            if result is not None:
                close_stream(result)

    return EventSourceResponse(events(), ping=15)


def close_stream(result) -> None:
    """Stop a lazily produced answer (an LLM stream) whose reader has gone; a no-op for the rest."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _event(name: str, data: dict) -> dict:
    return {"event": name, "data": json.dumps(data, ensure_ascii=False)}
