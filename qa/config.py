"""One typed settings object, read from `QA_*` environment variables (flags override per command).

Usage::

    settings = get_settings()
    settings.index_dir        # Path('index') unless QA_INDEX_DIR says otherwise
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    index_dir: Path = Field(Path("index"), description="Where the archive's index lives.")
    seeds_dir: Path = Field(Path("seeds"), description="Pages ingested when the index is empty.")
    embed_model: str | None = Field(
        None, description="sentence-transformers model: a local folder or a cached hub name; "
        "unset = the bundled multilingual-e5-small."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where embeddings run: 'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'."
    )
    embed_backend: Literal["auto", "torch", "onnx-fp32", "onnx-int8", "openvino", "openvino-int8"] = Field(
        "auto", description="How the model runs: 'auto' (on CPU, ingest embeds passages with int8 ONNX, "
        "else int8-weight OpenVINO, else fp32 OpenVINO, and "
        "questions and answer sentences with fp32 ONNX, torch where ONNX Runtime is missing; on CUDA, torch "
        "fp16), 'torch' (fp32 on CPU, fp16 on CUDA, everywhere), 'onnx-fp32' (CPU, everywhere), "
        "'onnx-int8' (int8 for questions too; slightly lower dev-set recall), 'openvino-int8' (int8 weights "
        "on OpenVINO, CPU, everywhere; needs openvino and nncf) or 'openvino' (fp32 on OpenVINO, "
        "CPU, everywhere; as fast as openvino-int8, ~470 MB more memory)."
    )
    embed_threads: int = Field(
        0, ge=0, description="CPU threads per model call; 0 = OMP_NUM_THREADS if set (qa serve --workers N "
        "sets cores // N), else one per core."
    )
    # Backends (qa/store.py and qa/index.py choose their implementation from these)
    store_url: str | None = Field(
        None, description="Unset: SQLite in the index folder. 'postgresql://user:password@host:port/dbname': "
        "PostgreSQL (SQLAlchemy 2 + psycopg 3), schema created on first use."
    )
    search_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="'faiss': search files in the index folder (default); 'milvus': a Milvus collection."
    )
    milvus_uri: str = Field(
        "milvus.db", description="A local file ending in .db (Milvus Lite, embedded; relative to the index "
        "folder) or http://host:19530 (a Milvus server)."
    )
    milvus_token: str | None = Field(None, description="Milvus token ('user:password'), if the server needs one.")
    milvus_collection: str = Field("qa_passages", description="The Milvus collection holding the passages.")
    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int | None = Field(
        None, ge=1, description="qa serve processes (--workers overrides); unset = one per 4 cores, at most 8 "
        "and one per 2 GiB of memory (each loads the model), and 1 with Milvus Lite (one process at a time)."
    )
    api_key: str | None = Field(None, description="When set, /api/* and /v1/* require 'Authorization: Bearer KEY'.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty = closed.")
    max_question_chars: int = 2000
    max_body_bytes: int = 64 * 1024
    # Optional OpenAI-compatible LLM upstream for generated answers
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = 30.0


def serve_workers(settings: Settings) -> int:
    """How many processes `qa serve` runs: QA_WORKERS, else one per 4 cores (a question's model
    call uses up to 4 threads well), at most 8 and at most one per 2 GiB of memory; 1 where the
    search engine allows one process only (Milvus Lite locks its folder).

    Usage: ``serve_workers(get_settings())  # 1 on a 2-core machine, 4 on 16 cores``
    """
    if settings.workers:
        return settings.workers
    if settings.search_backend == "milvus" and settings.milvus_uri.endswith(".db"):
        return 1
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(8, (os.cpu_count() or 1) // 4, int(memory_gib // 2)))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
