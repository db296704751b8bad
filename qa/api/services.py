"""What the routes share: one archive, embedder, retriever and answerer per process, the
settings, and the question checks every surface applies.

Usage::

    def route(svc: Services = Depends(get_services)): ...
    question = svc.question_text(req.question)      # HTTPException(422) when empty or too long
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from qa.answer import AnswerResult, Answerer, LLMClient
from qa.config import Settings
from qa.embed import Embedder, load_embedder
from qa.index import Archive
from qa.retrieve import HybridRetriever
from qa.store import open_store
from qa.understand import Turn


class Services:
    """Loaded once at startup (the model load is the slow part)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.archive = Archive(settings.index_dir, store=open_store(settings.index_dir, settings.store_url))
        self.embedder = load_embedder(settings.embed_model)
        self.archive.store.check_embedder(self.embedder.model_id, self.embedder.dim)
        self.retriever = HybridRetriever(self.archive, self.embedder)
        self.answerer = Answerer(self.retriever, LLMClient.from_settings(settings))

    def question_text(self, text: str) -> str:
        """The question stripped; a 422 when it is empty or over the configured length."""
        text = text.strip()
        if not text:
            raise HTTPException(422, "the question is empty")
        limit = self.settings.max_question_chars
        if len(text) > limit:
            raise HTTPException(422, f"the question is over {limit} characters")
        return text

    def ask(self, question: str, history, top_k: int = 5, date_from: str | None = None,
            date_to: str | None = None) -> AnswerResult:
        """Answer with the user/assistant turns of `history` (objects with .role and .content).
        The question is embedded once for both retrieval and answer scoring (`Embedder.one_request`)."""
        turns = [Turn(m.role, m.content) for m in history if m.role in ("user", "assistant")]
        with Embedder.one_request():
            return self.answerer.ask(question, turns, top_k=top_k, date_from=date_from, date_to=date_to)


def get_services(request: Request) -> Services:
    """FastAPI dependency: the services the app loaded at startup."""
    return request.app.state.services


def completed(result: AnswerResult) -> dict:
    """The answer as JSON once all its pieces exist (they may be produced lazily, e.g. LLM
    tokens: consuming them is what completes `result.answer`)."""
    for _ in result.pieces:
        pass
    return result.to_dict()
