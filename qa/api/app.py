"""create_app: the FastAPI app composed from its routers, middleware and error handlers.

Usage::

    app = create_app(Settings(index_dir=Path("index")))
    uvicorn.run(app, host="127.0.0.1", port=8000)
    uvicorn.run("qa.api:app_from_env", factory=True, workers=4)   # settings from QA_* variables
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from qa.api import health, lookup, openai, search
from qa.api.errors import install_error_handlers
from qa.api.middleware import BodyLimit, api_key_guard
from qa.api.pages import mount_pages
from qa.api.services import Services
from qa.config import Settings, get_settings

DESCRIPTION = """Ask the 衡阳日报 archive; every answer cites issue, date, page and passage.

Every error is JSON: `{"error": {"message": "..."}}`, including a 405 (with `Allow`) for a method
a route does not take. POST bodies are JSON objects sent as `Content-Type: application/json`, in
UTF-8. When the server runs with `QA_API_KEY`, `/api/*` and `/v1/*` need `Authorization: Bearer <key>`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for an index directory (the index must exist: `qa serve` checks first)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = await run_in_threadpool(Services, settings)
        yield

    app = FastAPI(title="衡阳日报 archive QA", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # /docs and /redoc come from mount_pages, offline
    app.state.settings = settings
    for router in (health.router, search.router, openai.router, lookup.router):
        app.include_router(router)
    mount_pages(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.middleware("http")(api_key_guard(settings.api_key))
    if settings.cors_origins.strip():
        # Added last, so it is the outermost layer: preflights are answered before the key check,
        # and error responses carry the CORS headers a browser needs to read them.
        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in settings.cors_origins.split(",")],
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    install_error_handlers(app)
    return app


def app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` and `qa serve --workers N`: settings from `QA_*`."""
    return create_app(get_settings())
