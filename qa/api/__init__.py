"""The HTTP API: one router module per surface, composed by `create_app`.

    health.py   GET /health
    search.py   POST /api/search, POST /api/ask (JSON or Server-Sent Events)
    openai.py   GET /v1/models, POST /v1/chat/completions (OpenAI-compatible)
    lookup.py   GET /api/citations/{id}, GET /api/issues, GET /api/issues/{id}
    pages.py    the chat page at /, the API reference at /docs and /redoc (served offline)

Usage::

    from qa.api import create_app
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)
"""

from qa.api.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
