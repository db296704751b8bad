"""`GET /health`: is the server up, and what does its archive hold (never needs the API key).

Usage::

    app.include_router(health.router)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from qa.api.errors import error_responses
from qa.api.services import Services, get_services

router = APIRouter(tags=["meta"])


class Health(BaseModel):
    status: str = Field(..., examples=["ok"])
    passages: int = Field(..., description="Passages in the archive.")
    issues: int = Field(..., description="Pages (issue pages) in the archive.")
    embedder: str = Field(..., description="The embedding model the archive was built with.")
    embed_backend: str = Field(..., description="How this server embeds questions: 'onnx-fp32' (the CPU "
                               "default), 'torch-fp32', 'torch-fp16' (CUDA), 'onnx-int8', 'openvino-int8' or "
                               "'openvino-fp32'.",
                               examples=["onnx-fp32"])
    embed_requests: int = Field(..., description="Embedding requests this server process has served "
                                "(questions, answer sentences).")
    embed_calls: int = Field(..., description="Model calls they took: fewer than requests when "
                             "concurrent requests shared a call.")


@router.get("/health", response_model=Health, summary="Health and archive size",
            responses=error_responses(500))
def health(svc: Services = Depends(get_services)):
    """Answers once the model is loaded; for load balancers and `make serve` scripts."""
    counts = svc.archive.store.counts()
    return {"status": "ok", "passages": counts["passages"], "issues": counts["issues"],
            "embedder": svc.embedder.model_id, "embed_backend": svc.embedder.backend,
            "embed_requests": svc.embedder.batcher.requests, "embed_calls": svc.embedder.batcher.calls}
