"""embed_openvino: the `Encoder` that runs a model on OpenVINO's CPU plugin (bulk passages), with
fp32 weights (`openvino`) or int8 ones (`openvino-int8`).

The model is the plain PyTorch ONNX export of `qa.embed_onnx` (transformer + pooling +
normalization in one graph, no ONNX Runtime fusions), converted once to OpenVINO IR and cached in
``$QA_MODEL_CACHE/<backend>/<folder>-<fingerprint>``; OpenVINO fuses it at compile time.

- **fp32**: the torch fp32 vectors (cosine ≥ 0.9999) at 0.6-0.7 of torch's CPU time per passage on
  an AVX2 CPU without VNNI, but it holds the fp32 weights, ~470 MB more than int8, which would take
  ingest past its 1.5 GB bound: opt-in (`QA_EMBED_BACKEND=openvino`).
- **int8 weights** (`openvino-int8`): NNCF's data-free `compress_weights` (INT8_ASYM, one scale
  and zero point per output channel) on every MatMul and on the embedding table, which is 96M of
  e5-small's 118M parameters. Activations stay fp32, so the vectors are the fp32 ones to cosine ≥
  0.9999, a text's vector does not depend on its batch, and no calibration text is needed; the
  speed is fp32 OpenVINO's, the weights take 119 MB instead of 470. `auto` ingests with it where
  int8 ONNX cannot run (and openvino and nncf are installed). NNCF's static int8 (`nncf.quantize`, activations too, calibrated
  on news passages) was measured slower on that CPU (217 vs 196 ms of CPU per passage) with a
  higher peak, so it is not used (`benchmarks/embed_backends.py`).

It runs `streams` model calls at once, one thread each (OpenVINO's throughput mode): on 2 cores
that costs less CPU per passage than one call on 2 threads, whose threads wait on each other.

Usage::

    enc = OpenVinoEncoder(folder, model_cache_dir() / "openvino-int8", threads=2, variant="openvino-int8")
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


def convert(onnx_file: Path, xml_file: Path, int8_weights: bool = False) -> None:
    """Convert an ONNX file to OpenVINO IR (``.xml`` + ``.bin``), weights kept in fp32, or with
    `int8_weights` compressed to int8 by NNCF (see the module docstring). No data, no network.

    Usage: ``convert(Path("raw.onnx"), Path("out/model_ov_int8.xml"), int8_weights=True)``
    """
    import openvino as ov

    model = ov.Core().read_model(str(onnx_file))
    if int8_weights:
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(xml_file), compress_to_fp16=False)


def missing_packages(variant: str) -> list[str]:
    """The Python packages `variant` ('openvino' or 'openvino-int8') needs that are not installed.

    Usage: ``missing_packages("openvino-int8")  # [] where openvino and nncf are installed``"""
    import importlib.util

    return [m for m in NEEDS[variant] if importlib.util.find_spec(m) is None]


def _require(variant: str) -> None:
    """OpenVinoError naming what to install when a package `variant` needs is missing."""
    missing = missing_packages(variant)
    if missing:
        raise OpenVinoError(f"QA_EMBED_BACKEND={variant} needs the {' and '.join(missing)} package"
                            f"{'s' if len(missing) > 1 else ''} (pip install {' '.join(missing)}, "
                            "or pip install -e '.[openvino]')")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


VARIANTS = {"openvino": "openvino-fp32", "openvino-int8": "openvino-int8"}  # QA_EMBED_BACKEND → Encoder.backend
NEEDS = {"openvino": ("openvino",), "openvino-int8": ("openvino", "nncf")}  # its Python packages


class OpenVinoEncoder:
    """A model folder on OpenVINO, `variant` 'openvino' (fp32) or 'openvino-int8' (int8 weights),
    with `threads` CPU threads (0: one per core), split into up to `MAX_STREAMS` concurrent
    one-call streams; see the module docstring.

    Usage: ``OpenVinoEncoder(folder, model_cache_dir() / "openvino").encode(["passage: 衡阳"], 16)``
    """

    device = "cpu"
    batch_size = 16  # texts per call: enough for the GEMMs, little padding once sorted by length
    # padded tokens per call: bounds each stream's buffers, which OpenVINO keeps at their largest
    # (peak RSS; int8 weights, 256 passages, 2 streams: 992 MB at 1024, 1117 at 2048, 1208 at 4096;
    # ONNX int8: 1037), at no measured CPU cost
    max_batch_tokens = 1024
    batch_invariant = True  # padding is masked out: merging callers' texts changes nothing
    MAX_STREAMS = 4

    def __init__(self, folder: Path, cache_dir: Path, threads: int = 0, variant: str = "openvino"):
        _require(variant)
        import openvino as ov

        folder = Path(folder)
        self.backend = VARIANTS[variant]
        xml = ensure_onnx_model(folder, cache_dir, variant)
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
