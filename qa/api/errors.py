"""The one error shape every route returns, `{"error": {"message": ...}}`, its OpenAPI
documentation, and the handlers that turn exceptions into it.

Usage::

    @router.get("/x", responses=error_responses(404, 500))
    ...
    install_error_handlers(app)
"""

from __future__ import annotations

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
    401: "Missing or wrong API key. Only when the server runs with `QA_API_KEY`: send "
         "`Authorization: Bearer <key>`.",
    404: "No such passage or issue.",
    413: "The request body is over the size limit (`QA_MAX_BODY_BYTES`, 64 KiB by default).",
    422: "Invalid request: the message names each bad field (bad JSON, wrong types, an empty or "
         "too long question, a date that is not YYYY-MM-DD, a reversed date range, top_k out of range).",
    500: "Internal error; the message names only the kind of error.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses, all with the real error body."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


def error_response(status: int, message: str) -> JSONResponse:
    """A JSON error response in the shared shape."""
    return JSONResponse(status_code=status, content={"error": {"message": message}})


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        problems.append(f"{where or 'body'}: {e.get('msg')}")
    return error_response(422, "invalid request: " + "; ".join(problems))


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail))


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
