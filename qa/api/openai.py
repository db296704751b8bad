"""The OpenAI-compatible surface: `GET /v1/models` and `POST /v1/chat/completions` (JSON or
streamed chunks), so OpenAI client libraries and chat front-ends can use the archive.

Usage::

    app.include_router(openai.router)
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="…").chat.completions.create(...)
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from qa.api.errors import error_responses
from qa.api.search import CitedPassage, Message, close_stream
from qa.api.services import Services, completed, get_services

router = APIRouter(tags=["openai"])
MODEL_ID = "hengyang-qa"


# -- models -----------------------------------------------------------------------------------------
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TextPart(BaseModel):
    """One part of a message's content in OpenAI's list form; only text parts are accepted."""

    type: Literal["text"]
    text: str


class ChatMessage(Message):
    """A request message: `content` is a string or OpenAI's list of text parts, joined in order
    (many OpenAI clients send the list form)."""

    content: str | list[TextPart]

    @field_validator("content", mode="before")
    @classmethod
    def _join_parts(cls, value):
        # Joined here so that the routes only ever see a string; the list type is for the schema.
        if not isinstance(value, list):
            return value
        return "".join(_part_text(i, part) for i, part in enumerate(value))


def _part_text(i: int, part) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return part["text"]
    if kind == "text":
        problem = 'has no "text" string'
    elif isinstance(kind, str):
        problem = f"is of type {kind!r}: only text parts are accepted"
    else:
        problem = 'is not an object with a "type"'
    raise ValueError(f'content part {i} {problem}; a text part is {{"type": "text", "text": "..."}}')


class ChatRequest(BaseModel):
    model: str = Field(MODEL_ID, description="Echoed back; the archive answers whatever the name.")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=50, description="The last user message "
                                        "is the question, earlier ones the history.")
    stream: bool = False
    temperature: float | None = Field(None, description="Accepted for compatibility; ignored.")
    max_tokens: int | None = Field(None, description="Accepted for compatibility; ignored.")


class ChatChoice(BaseModel):
    index: int
    finish_reason: Literal["stop"]
    message: Message


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[CitedPassage] = Field(..., description="Extra field: the passages the `[n]` markers cite.")
    no_answer: bool = Field(..., description="Extra field: true when the archive does not answer.")
    warning: str | SkipJsonSchema[None] = Field(None, exclude_if=lambda v: v is None,
                                                description="Extra field, only when set: as `/api/ask`'s "
                                                            "`warning`; a caveat for the reader also opens "
                                                            "the content.")


_CHUNKS = {"schema": {"type": "string", "description": "Server-Sent Events of `chat.completion.chunk` "
                                                       "objects, then `data: [DONE]`"}}


# -- routes -----------------------------------------------------------------------------------------
@router.get("/v1/models", response_model=ModelList, summary="List models",
            responses=error_responses(401, 500))
def models():
    """The one model this server offers (any name is accepted in chat requests)."""
    return {"data": [{"id": MODEL_ID, "owned_by": MODEL_ID}]}


@router.post("/v1/chat/completions", response_model=ChatCompletion, summary="Chat completion (OpenAI-compatible)",
             responses={200: {"content": {"text/event-stream": _CHUNKS},
                              "description": "A `chat.completion`, or with `stream: true` its chunks; the "
                                             "first and the last chunk carry `citations`."},
                        **error_responses(400, 401, 413, 422, 500)})
async def chat(req: ChatRequest, svc: Services = Depends(get_services)):
    """OpenAI-compatible chat: the last user message is the question, earlier ones the history.
    Citations travel in the extra field `citations`."""
    users = [i for i, m in enumerate(req.messages) if m.role == "user"]
    if not users:
        raise HTTPException(422, "messages must contain a user message")
    last = users[-1]
    question = svc.question_text(req.messages[last].content)
    result = await run_in_threadpool(svc.ask, question, req.messages[:last])
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    head = {"id": cid, "created": created, "model": req.model}
    # a chat client shows only the content: the reader's caveat (the question's issue or days are
    # not in the archive, `qa.retrieve.scope_caveat`) opens it; every warning is in `warning` too
    opening = f"（{result.caveat}）\n" if result.caveat else ""
    if not req.stream:
        body = await run_in_threadpool(completed, result)
        return {**head, "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": opening + body["answer"]}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": body["citations"], "no_answer": body["no_answer"],
                **({"warning": body["warning"]} if body.get("warning") else {})}

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        return {"data": json.dumps({**head, "object": "chat.completion.chunk",
                                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra},
                                   ensure_ascii=False)}

    async def stream():
        citations = [c.to_dict() for c in result.citations]
        yield chunk({"role": "assistant", "content": opening}, citations=citations)
        try:
            async for piece in iterate_in_threadpool(result.pieces):
                yield chunk({"content": piece})
        finally:  # a reader who went away must not keep the LLM upstream open
            close_stream(result)
        final = result.to_dict()  # complete only once the pieces are exhausted
        yield chunk({}, "stop", citations=final["citations"], no_answer=final["no_answer"],
                    **({"warning": final["warning"]} if final.get("warning") else {}))
        yield {"data": "[DONE]"}

    return EventSourceResponse(stream(), ping=15)
