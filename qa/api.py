"""serve: the FastAPI app — JSON API, SSE streaming, OpenAI-compatible chat, the web page.

Usage::

    app = create_app(Settings(index_dir=Path("index")))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import get_route_path

from qa.answer import AnswerResult, Answerer, LLMClient
from qa.config import Settings, get_settings
from qa.embed import load_embedder
from qa.index import Archive
from qa.lookup import citation_detail, issue_detail, issue_list
from qa.retrieve import Citation, HybridRetriever
from qa.understand import Turn

log = logging.getLogger("qa.api")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


# -- request / response models (they make /docs the reference) ------------------------------------
class SearchResult(BaseModel):
    chunk_id: str
    text: str
    score: float
    citation: Citation


def _check_date(v: str | None) -> str | None:
    if v is None or v == "":
        return None
    if not _DATE.match(v):
        raise ValueError("dates are YYYY-MM-DD")
    from datetime import date

    date.fromisoformat(v)  # raises ValueError for 2021-02-30
    return v


class _Filtered(BaseModel):
    date_from: str | None = Field(None, description="Earliest publication date, YYYY-MM-DD")
    date_to: str | None = Field(None, description="Latest publication date, YYYY-MM-DD")

    _dates = field_validator("date_from", "date_to")(_check_date)


class SearchRequest(_Filtered):
    query: str = Field(..., description="The question or keywords, in Chinese.")
    top_k: int = Field(5, ge=1, le=50)
    issue: str | None = Field(None, description="Issue number as printed, e.g. '18012'")


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]


class Message(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str


class AskRequest(_Filtered):
    question: str
    history: list[Message] = Field(default_factory=list, max_length=50)
    top_k: int = Field(5, ge=1, le=50)
    stream: bool = False


class CitedModel(BaseModel):
    n: int
    chunk_id: str
    text: str
    citation: Citation


class AskResponse(BaseModel):
    answer: str
    no_answer: bool
    citations: list[CitedModel]
    warning: str | None = None


class ChatRequest(BaseModel):
    model: str = "hengyang-qa"
    messages: list[Message] = Field(..., min_length=1, max_length=50)
    stream: bool = False
    temperature: float | None = None
    max_tokens: int | None = None


# -- app ------------------------------------------------------------------------------------------
class Services:
    """What the routes share: one archive, one embedder, one retriever, one answerer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.archive = Archive(settings.index_dir, faiss_factory=settings.faiss_index)
        self.embedder = load_embedder(settings.embed_model)
        self.archive.store.check_embedder(self.embedder.model_id, self.embedder.dim)
        self.retriever = HybridRetriever(self.archive, self.embedder)
        self.answerer = Answerer(self.retriever, LLMClient.from_settings(settings))


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, **extra}})


class BodyLimit:
    """Refuse request bodies over `max_bytes` with a 413, whether or not they declare a length
    (chunked bodies are counted as they arrive; the app then sees the client go away)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        seen = 0
        refused = False

        async def counted_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:  # once the 413 is out, whatever the app says is dropped
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope, receive, send):
        response = _error(413, f"request body over {self.max_bytes} bytes")
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for an index directory (the index must exist: `qa serve` builds it first)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = await run_in_threadpool(Services, settings)
        yield

    app = FastAPI(title="衡阳日报 archive QA", version="0.1.0", lifespan=lifespan,
                  description="Ask the 衡阳日报 archive; every answer cites issue, date, page and passage.")

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = get_route_path(request.scope)  # without any root_path: what routing matches
        if settings.api_key and (path.startswith("/api/") or path.startswith("/v1/")):
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await call_next(request)

    if settings.cors_origins.strip():
        # Added last, so it is the outermost layer: preflights are answered before the key check,
        # and error responses carry the CORS headers a browser needs to read them.
        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in settings.cors_origins.split(",")],
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            problems.append(f"{where or 'body'}: {e.get('msg')}")
        return _error(422, "invalid request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception):
        log.exception("unhandled error")
        return _error(500, f"internal error: {type(exc).__name__}")

    def services(request: Request) -> Services:
        return request.app.state.services

    def question_text(text: str) -> str:
        text = text.strip()
        if not text:
            raise HTTPException(422, "the question is empty")
        if len(text) > settings.max_question_chars:
            raise HTTPException(422, f"the question is over {settings.max_question_chars} characters")
        return text

    @app.get("/health", tags=["meta"])
    def health(svc: Services = Depends(services)) -> dict:
        counts = svc.archive.store.counts()
        return {"status": "ok", "passages": counts["passages"], "issues": counts["issues"],
                "embedder": svc.embedder.model_id}

    @app.post("/api/search", response_model=SearchResponse, tags=["search"])
    def api_search(req: SearchRequest, svc: Services = Depends(services)):
        """Passages that answer the query, each with its issue citation."""
        query = question_text(req.query)
        hits = svc.retriever.search(query, req.top_k, date_from=req.date_from, date_to=req.date_to,
                                    issue=req.issue)
        return {"query": req.query, "results": [h.to_dict() for h in hits]}

    def run_ask(svc: Services, question: str, history: list[Message], top_k: int, date_from, date_to) -> AnswerResult:
        turns = [Turn(m.role, m.content) for m in history if m.role in ("user", "assistant")]
        return svc.answerer.ask(question, turns, top_k=top_k, date_from=date_from, date_to=date_to)

    @app.post("/api/ask", response_model=AskResponse, response_model_exclude_none=True, tags=["answer"],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "JSON, or with stream=true Server-Sent Events: "
                               "`citations`, then `delta` pieces, then `done` (or `error`)."}})
    async def api_ask(req: AskRequest, svc: Services = Depends(services)):
        """An extractive (or LLM) answer with `[n]` markers and the cited passages."""
        question = question_text(req.question)
        if not req.stream:
            result = await run_in_threadpool(run_ask, svc, question, req.history, req.top_k,
                                             req.date_from, req.date_to)
            return result.to_dict()

        async def events():
            try:
                result = await run_in_threadpool(run_ask, svc, question, req.history, req.top_k,
                                                 req.date_from, req.date_to)
                yield {"event": "citations", "data": json.dumps(
                    {"citations": [c.to_dict() for c in result.citations], "no_answer": result.no_answer},
                    ensure_ascii=False)}
                for piece in result.pieces:
                    yield {"event": "delta", "data": json.dumps({"text": piece}, ensure_ascii=False)}
                yield {"event": "done", "data": json.dumps(result.to_dict(), ensure_ascii=False)}
            except Exception as exc:  # an error mid-stream is an event, not a dropped connection
                log.exception("ask stream failed")
                yield {"event": "error", "data": json.dumps(
                    {"message": f"internal error ({type(exc).__name__}); the answer could not be completed"},
                    ensure_ascii=False)}

        return EventSourceResponse(events(), ping=15)

    @app.get("/v1/models", tags=["openai"])
    def models() -> dict:
        return {"object": "list", "data": [{"id": "hengyang-qa", "object": "model", "owned_by": "hengyang-qa"}]}

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(req: ChatRequest, svc: Services = Depends(services)):
        """OpenAI-compatible chat: the last user message is the question, earlier ones the history.
        Citations travel in the extra field `citations`."""
        users = [i for i, m in enumerate(req.messages) if m.role == "user"]
        if not users:
            raise HTTPException(422, "messages must contain a user message")
        last = users[-1]
        question = question_text(req.messages[last].content)
        result = await run_in_threadpool(run_ask, svc, question, req.messages[:last], 5, None, None)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        citations = [c.to_dict() for c in result.citations]
        if not req.stream:
            return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": result.answer}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    "citations": citations, "no_answer": result.no_answer}

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return json.dumps(body, ensure_ascii=False)

        def stream() -> Iterator[dict]:
            yield {"data": chunk({"role": "assistant", "content": ""}, citations=citations)}
            for piece in result.pieces:
                yield {"data": chunk({"content": piece})}
            yield {"data": chunk({}, "stop", citations=citations, no_answer=result.no_answer)}
            yield {"data": "[DONE]"}

        return EventSourceResponse(stream(), ping=15)

    def found(lookup, store, key: str, what: str) -> dict:
        # Ids are checked for shape first; they only ever reach the store as SQL parameters.
        data = lookup(store, key) if _SAFE_ID.match(key) else None
        if data is None:
            raise HTTPException(404, f"no {what} with id {key!r}")
        return data

    @app.get("/api/citations/{chunk_id}", tags=["lookup"])
    def citation(chunk_id: str, svc: Services = Depends(services)) -> dict:
        """A passage, its citation, the whole article with the highlight offsets, and its neighbours."""
        return found(citation_detail, svc.archive.store, chunk_id, "passage")

    @app.get("/api/issues", tags=["lookup"])
    def issues(svc: Services = Depends(services)) -> dict:
        return {"issues": issue_list(svc.archive.store)}

    @app.get("/api/issues/{issue_id}", tags=["lookup"])
    def issue(issue_id: str, svc: Services = Depends(services)) -> dict:
        """One issue with its articles and their passages."""
        return found(issue_detail, svc.archive.store, issue_id, "issue")

    web = resources.files("qa") / "web"
    if (web / "index.html").is_file():
        web_dir = Path(str(web))

        @app.get("/", include_in_schema=False)
        def index_page():
            return FileResponse(web_dir / "index.html")

        app.mount("/static", StaticFiles(directory=web_dir), name="static")

    return app
