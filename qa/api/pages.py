"""The pages a browser opens: the chat page at `/` (with its `/static/` files) and the API
reference at `/docs` (Swagger UI) and `/redoc` (ReDoc), whose scripts and styles the app
serves itself from `/docs-assets/`, so they work on a network with no way out.

Usage::

    app = FastAPI(docs_url=None, redoc_url=None)
    mount_pages(app)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(str(resources.files("qa.api") / "assets"))
WEB = Path(str(resources.files("qa") / "web"))
# The reference pages load nothing from outside (ReDoc would fetch its sidebar logo from its
# CDN): on a closed network such a request would only hang or fail.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def mount_pages(app: FastAPI) -> None:
    """Add `/`, `/static`, `/docs`, `/redoc` and `/docs-assets` to the app."""
    app.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        return _local_only(get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}", title=f"{app.title} — API",
            swagger_js_url=f"{base}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{base}/docs-assets/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None}))  # no badge fetched from the internet

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        return _local_only(get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}", title=f"{app.title} — API",
            redoc_js_url=f"{base}/docs-assets/redoc.standalone.js",
            redoc_favicon_url=f"{base}/docs-assets/favicon-32x32.png", with_google_fonts=False))

    if (WEB / "index.html").is_file():
        @app.get("/", include_in_schema=False)
        def index_page() -> FileResponse:
            return FileResponse(WEB / "index.html")

        app.mount("/static", StaticFiles(directory=WEB), name="static")


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page
