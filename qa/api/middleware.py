"""Request guards: a body size limit and the API key check.

Usage::

    app.add_middleware(BodyLimit, max_bytes=64 * 1024)
    app.middleware("http")(api_key_guard(settings.api_key))
"""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.routing import get_route_path

from qa.api.errors import error_response

GUARDED_PREFIXES = ("/api/", "/v1/")


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
        response = error_response(413, f"request body over {self.max_bytes} bytes")
        await response(scope, receive, send)


def api_key_guard(api_key: str | None):
    """An HTTP middleware that, when `api_key` is set, lets /api/* and /v1/* through only with
    `Authorization: Bearer <api_key>` (compared in constant time)."""

    async def guard(request: Request, call_next):
        path = get_route_path(request.scope)  # without any root_path: what routing matches
        if api_key and path.startswith(GUARDED_PREFIXES):
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                return error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await call_next(request)

    return guard
