"""The one error shape every route returns, `{"error": {"message": ...}}`, its OpenAPI
documentation, and the handlers that turn exceptions into it.

Usage::

    @router.get("/x", responses=error_responses(404, 500))
    ...
    install_error_handlers(app)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("qa.api")


class ErrorDetail(BaseModel):
    message: str = Field(..., description="What went wrong, for a person to read.")


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail


_MEANING = {
    400: "The body is not UTF-8 text (JSON is sent as UTF-8).",
    401: "Missing or wrong API key. Only when the server runs with `QA_API_KEY`: send "
         "`Authorization: Bearer <key>`.",
    404: "No such passage or issue.",
    413: "The request body is over the size limit (`QA_MAX_BODY_BYTES`, 64 KiB by default).",
    422: "Invalid request: a body that is not a JSON object sent as `Content-Type: application/json`, "
         "bad JSON (the message says where), or bad fields, each named (wrong types, an empty or too long "
         "question, a date that is not YYYY-MM-DD, a reversed date range, top_k out of range).",
    500: "Internal error; the message names only the kind of error.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses, all with the real error body."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the shared shape.

    Usage: ``return error_response(404, "no passage with id 'x'")``"""
    return JSONResponse(status_code=status, content={"error": {"message": message}}, headers=headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, _validation_message(exc.errors(), exc.body, request.headers.get("content-type")))


def _validation_message(errors, body, content_type: str | None) -> str:
    """What a person needs to mend a request FastAPI refused: where bad JSON breaks, what the body
    must be, or each bad field."""
    problems = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            return "the body is not valid JSON: " + _json_problem(e, body)
        # the body itself is no object; a model validator's error (a reversed date range) is
        # located at the body too, but its input is the object and its message says what to mend
        if loc == ("body",) and not isinstance(e.get("input"), dict):
            return _body_problem(e, content_type)
        where = ".".join(str(x) for x in loc if x != "body")
        problems.append(f"{where or 'body'}: {str(e.get('msg')).removeprefix('Value error, ')}")
    return "invalid request: " + "; ".join(problems)


def _json_problem(error: dict, doc) -> str:
    reason, pos = error.get("ctx", {}).get("error", "JSON decode error"), error["loc"][-1]
    if isinstance(doc, str) and isinstance(pos, int):
        return str(json.JSONDecodeError(reason, doc, pos))  # 'Expecting value: line 1 column 13 (char 12)'
    return f"{reason} (char {pos})"


def _body_problem(error: dict, content_type: str | None) -> str:
    given = error.get("input")
    if error.get("type") == "missing":
        return "the body is empty: send a JSON object with Content-Type: application/json"
    # FastAPI parses a body as JSON only when its Content-Type says JSON (see README, API);
    # anything else reaches validation as the raw bytes.
    if isinstance(given, (bytes, bytearray)):
        sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return f"the body must be a JSON object sent with Content-Type: application/json (this request had {sent})"
    kinds = {list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number"}
    return f"the body must be a JSON object {{...}}, not {kinds.get(type(given), 'null')}"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI raises 'There was an error parsing the body' from the decode error; say which.
        bad = exc.__cause__
        message = (f"the body is not UTF-8 text (byte 0x{bad.object[bad.start]:02x} at position {bad.start}): "
                   "send the JSON encoded as UTF-8")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow")
        message = f"{request.method} is not allowed on {request.url.path}"
        message += f"; use {allowed}" if allowed else ""
    return error_response(exc.status_code, message, headers=exc.headers)


async def _crashed(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Validation errors, HTTP errors and crashes all answer in the shared shape, and the
    OpenAPI document says so."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crashed)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI documents a `{"detail": [...]}` 422 on every route with parameters; routes that
        # can really answer 422 document ours, and a plain string path parameter cannot fail.
        spec = generate()
        for operation in (op for ops in spec.get("paths", {}).values() for op in ops.values()):
            if "HTTPValidationError" in str(operation.get("responses", {}).get("422", "")):
                del operation["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        return spec

    app.openapi = openapi
