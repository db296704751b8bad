"""client: a running `qa serve` used over HTTP, so `qa search/ask/eval --url` answer without
loading the model in the calling process.

Usage::

    server = RemoteArchive("http://127.0.0.1:8000", api_key=None)
    server.search("衡阳排第几？", top_k=3)["results"]      # the /api/search body
    RemoteRetriever(server).search("…", top_k=10)[0].text  # what qa.evaluate expects
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx


class ServerError(RuntimeError):
    """The server could not be reached or refused the request (its message included)."""


class RemoteArchive:
    """`/api/search` and `/api/ask` of a server at `url` (with `Authorization` when a key is given)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def _post(self, path: str, body: dict) -> dict:
        try:
            r = self._http.post(path, json={k: v for k, v in body.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the server at {self.url} ({exc}); is `qa serve` running?") from exc
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise ServerError(f"the server at {self.url} answered {r.status_code}: {message}")
        return r.json()

    def search(self, query: str, top_k: int = 5, *, date_from: str | None = None, date_to: str | None = None,
               issue: str | None = None) -> dict:
        """The /api/search body: {"query", "results": [{chunk_id, text, score, citation}]}."""
        return self._post("/api/search", {"query": query, "top_k": top_k, "date_from": date_from,
                                          "date_to": date_to, "issue": issue})

    def ask(self, question: str, top_k: int = 5, *, date_from: str | None = None,
            date_to: str | None = None) -> dict:
        """The /api/ask body: {"answer", "no_answer", "citations", "warning"?}."""
        return self._post("/api/ask", {"question": question, "top_k": top_k, "date_from": date_from,
                                       "date_to": date_to})


# -- the retriever / answerer interface qa.evaluate uses, backed by the server -----------------------
@dataclass
class RemoteHit:
    chunk_id: str
    text: str
    score: float
    citation: dict


@dataclass
class RemoteAnswer:
    answer: str
    no_answer: bool
    citations: list[dict] = field(default_factory=list)
    warning: str | None = None


class RemoteRetriever:
    def __init__(self, server: RemoteArchive):
        self.server = server

    def search(self, query: str, top_k: int = 5, **filters) -> list[RemoteHit]:
        return [RemoteHit(**h) for h in self.server.search(query, top_k, **filters)["results"]]


class RemoteAnswerer:
    def __init__(self, server: RemoteArchive):
        self.server = server

    def ask(self, question: str, history=None, top_k: int = 5, **filters) -> RemoteAnswer:
        if history:
            raise ValueError("RemoteAnswerer asks single questions; use /api/ask for conversations")
        return RemoteAnswer(**self.server.ask(question, top_k, **filters))
