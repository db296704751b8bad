"""embed_openvino: the `Encoder` that runs a model on OpenVINO's CPU plugin, in fp32 (bulk passages).

The model is the plain PyTorch ONNX export of `qa.embed_onnx` (transformer + pooling +
normalization in one graph, no ONNX Runtime fusions), converted once to OpenVINO IR and cached in
``$QA_MODEL_CACHE/openvino/<folder>-<fingerprint>``; OpenVINO fuses it at compile time. Same
vectors as torch fp32 (cosine ≥ 0.9999), at 0.6-0.7 of torch's CPU time per passage on an AVX2
CPU without VNNI, where it also beats ONNX Runtime's dynamic int8 (measured in
`benchmarks/embed_backends.py`; OpenVINO int8 from NNCF calibration was no faster there). It holds
the fp32 weights (~470 MB more than int8), which would take ingest past its 1.5 GB bound, so it is
opt-in (`QA_EMBED_BACKEND=openvino`); `auto` uses it only where ONNX Runtime is missing.
It runs `streams` model calls at once, one thread each (OpenVINO's throughput mode): on 2 cores
that costs less CPU per passage than one call on 2 threads, whose threads wait on each other.

Usage::

    enc = OpenVinoEncoder(folder, model_cache_dir() / "openvino", threads=2)
    V = enc.encode_ids(ids, batch_size=16)   # (n, enc.dim) float32, L2-normalized
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from qa.embed_onnx import OnnxExportError, _read_json, ensure_onnx_model, load_tokenizer


class OpenVinoError(OnnxExportError):
    """OpenVINO is not installed, or cannot compile the model on this CPU."""


def convert(onnx_file: Path, xml_file: Path) -> None:
    """Convert an ONNX file to OpenVINO IR (``.xml`` + ``.bin``), weights kept in fp32.

    Usage: ``convert(Path("raw.onnx"), Path("out/model_ov.xml"))``
    """
    import openvino as ov

    ov.save_model(ov.Core().read_model(str(onnx_file)), str(xml_file), compress_to_fp16=False)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OpenVinoEncoder:
    """A model folder on OpenVINO (fp32) with `threads` CPU threads (0: one per core), split into
    up to `MAX_STREAMS` concurrent one-call streams; see the module docstring.

    Usage: ``OpenVinoEncoder(folder, model_cache_dir() / "openvino").encode(["passage: 衡阳"], 16)``
    """

    device = "cpu"
    backend = "openvino-fp32"
    batch_size = 16  # texts per call: enough for the GEMMs, little padding once sorted by length
    max_batch_tokens = 4096  # padded tokens per call: bounds each stream's attention buffers (peak RSS)
    batch_invariant = True  # padding is masked out: merging callers' texts changes nothing
    MAX_STREAMS = 4

    def __init__(self, folder: Path, cache_dir: Path, threads: int = 0):
        try:
            import openvino as ov
        except ImportError as e:
            raise OpenVinoError("QA_EMBED_BACKEND=openvino needs the openvino package "
                                "(pip install openvino)") from e
        folder = Path(folder)
        xml = ensure_onnx_model(folder, cache_dir, "openvino")
        self.threads = max(1, int(threads) or _cores())
        self.streams = min(self.threads, self.MAX_STREAMS)
        self.dim = int(_read_json(folder / "config.json")["hidden_size"])
        self.max_seq_length = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 512)
        self.prompts = dict(_read_json(folder / "config_sentence_transformers.json").get("prompts") or {})
        self.tokenizer, self.pad_id = load_tokenizer(folder, self.max_seq_length)
        try:
            self.compiled = ov.Core().compile_model(str(xml), "CPU", {
                "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams,
                "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"})
        except RuntimeError as e:
            raise OpenVinoError(f"OpenVINO cannot compile {xml}: {str(e)[-1000:]}") from e
        self._queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self._queue.set_callback(self._store)
        self._lock = threading.Lock()  # one bulk call at a time owns the queue and its output
        self._out: np.ndarray | None = None

    def _store(self, request, idx: np.ndarray) -> None:
        self._out[idx] = request.get_output_tensor(0).data

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for `texts` as given (prefixes included); see `encode_ids`."""
        encodings = self.tokenizer.encode_batch(texts)  # Rust, GIL released; truncated, not padded
        return self.encode_ids([np.asarray(e.ids, np.int64) for e in encodings], batch_size)

    def encode_ids(self, ids: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Vectors for tokenized texts: calls of similar token length (`length_batches`, at most
        `max_batch_tokens` padded tokens), `streams` of them running at once."""
        from qa.embed import length_batches, pad_ids

        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        with self._lock:
            self._out = out = np.empty((len(ids), self.dim), np.float32)
            try:
                for idx in length_batches(lengths, batch_size, self.max_batch_tokens):
                    input_ids, mask = pad_ids([ids[i] for i in idx], self.pad_id)
                    self._queue.start_async({"input_ids": input_ids, "attention_mask": mask}, idx)
            finally:
                self._queue.wait_all()
                self._out = None
        return out
