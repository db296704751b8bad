"""embed_onnx: the `Encoder` that runs a model as ONNX on ONNX Runtime (CPU), in fp32 or int8.

Both variants are made here, offline, from the local model folder: PyTorch's ONNX exporter
(transformer + pooling + normalization in one graph) and ONNX Runtime's BERT fusions give the
**fp32** model (`onnx-fp32`: the torch fp32 vectors to cosine ≥ 0.9999, at about a third of torch's
CPU time for one short question); the **int8** one (`onnx-int8`) adds ONNX Runtime's
dynamic int8 quantization of the MatMuls (one scale per output channel) and of the embedding
table (the 250k-token vocabulary is most of the model: 118 MB instead of 470 MB). That is the recipe of
sentence-transformers' `export_dynamic_quantized_onnx_model`, done without `optimum`, whose
releases do not run with the transformers 5 that sentence-transformers 5+ needs. Per-channel
scales matter: per-tensor ones drop the cosine to fp32 below 0.99 on our passages.

The export runs once per model and variant in a child process (it needs ~2 GB that the ingest
or server process should not keep) and is cached in
``$QA_MODEL_CACHE/onnx-<variant>/<folder>-<fingerprint>``; the fingerprint covers the weights,
the export recipe and the ONNX Runtime version.

Usage::

    enc = OnnxEncoder(folder, model_cache_dir() / "onnx-fp32", "fp32", threads=2)
    V = enc.encode(["query: 衡阳日报…"], batch_size=32)   # (n, enc.dim) float32, L2-normalized
    enc = OnnxEncoder(folder, model_cache_dir() / "onnx-int8", "int8")   # bulk passages (ingest)
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

EXPORT_VERSION = 2  # bump when the exported graph or the quantization recipe changes
# variant → file in its cache folder; "openvino" is the plain export converted for OpenVINO (qa/embed_openvino.py)
MODEL_FILES = {"int8": "model_int8.onnx", "fp32": "model_fp32.onnx", "openvino": "model_ov.xml",
               "openvino-int8": "model_ov_int8.xml"}
MARKER_FILE = "export.json"
RECIPES = {"fp32": "torch.onnx → ORT bert fusion",
           "int8": "torch.onnx → ORT bert fusion → quantize_dynamic QInt8 per-channel MatMul/Attention/Embed",
           "openvino": "torch.onnx → OpenVINO IR (fp32 weights; OpenVINO fuses at compile time)",
           "openvino-int8": "torch.onnx → OpenVINO IR → NNCF compress_weights INT8_ASYM per-channel (MatMul + embedding)"}
# whose versions are in the fingerprint
RUNTIMES = {"int8": ("onnxruntime",), "fp32": ("onnxruntime",), "openvino": ("openvino",),
            "openvino-int8": ("openvino", "nncf")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class OnnxExportError(RuntimeError):
    """The model folder cannot be run as ONNX (unsupported pooling, export failure)."""


def pooling_mode(folder: Path) -> str:
    """'mean' or 'cls' from the sentence-transformers Pooling config; OnnxExportError otherwise.

    Usage: ``pooling_mode(folder)  # 'mean' for e5``
    """
    modules = json.loads((folder / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        raise OnnxExportError(f"{folder}: ONNX export supports Transformer → Pooling [→ Normalize], not {kinds}")
    pool = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
             for k, v in pool.items() if k.startswith("pooling_mode_") and v]
    if modes not in (["mean"], ["cls"]):
        raise OnnxExportError(f"{folder}: ONNX export supports mean or CLS pooling, not {modes}")
    return modes[0]


def _runtime_version(runtime: str) -> str:
    """The installed version of `runtime`; the module's own where the distribution has another
    name (onnxruntime-gpu, onnxruntime-openvino), so such installs still export and cache."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(runtime)
    except PackageNotFoundError:
        return str(getattr(importlib.import_module(runtime), "__version__", "unknown"))


def _fingerprint(folder: Path, runtimes: tuple[str, ...] = ("onnxruntime",)) -> str:
    h = hashlib.sha256("|".join([str(EXPORT_VERSION), *map(_runtime_version, runtimes)]).encode())
    for name in ("config.json", "modules.json", "1_Pooling/config.json", *WEIGHT_FILES):
        p = folder / name
        if p.is_file():
            st = p.stat()
            h.update(f"|{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def onnx_model_dir(folder: Path, cache_dir: Path, variant: str = "fp32") -> Path:
    """Where the `variant` export of `folder` is cached in `cache_dir` (whether or not it exists yet).

    Usage: ``onnx_model_dir(folder, model_cache_dir() / "onnx-fp32") / MODEL_FILES["fp32"]``
    """
    return Path(cache_dir) / f"{folder.name}-{_fingerprint(folder, RUNTIMES[variant])}"


def ensure_onnx_model(folder: Path, cache_dir: Path, variant: str = "int8") -> Path:
    """The cached `variant` ('int8' or 'fp32') ONNX model of `folder`, exported first (in a child
    process) if missing. Concurrent callers wait on a file lock; a crash leaves no half folder
    (atomic rename).

    Usage: ``onnx_file = ensure_onnx_model(folder, model_cache_dir() / "onnx-fp32", "fp32")``
    """
    if variant not in MODEL_FILES:
        raise ValueError(f"ONNX variant must be one of {sorted(MODEL_FILES)}, not {variant!r}")
    folder = Path(folder).absolute()
    pooling_mode(folder)  # refuse unsupported models before paying for an export
    target = onnx_model_dir(folder, cache_dir, variant)
    if (target / MARKER_FILE).is_file():
        return target / MODEL_FILES[variant]
    if target in _failed:  # `auto` falls back through several backends: fail once per process, fast
        raise OnnxExportError(_failed[target])
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / MARKER_FILE).is_file():
            try:
                _export_in_child(folder, target, variant)
            except OnnxExportError as exc:
                _failed[target] = str(exc)
                raise
    return target / MODEL_FILES[variant]


_failed: dict[Path, str] = {}  # export folder → why its export failed in this process


def _export_in_child(folder: Path, target: Path, variant: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-m", "qa.embed_onnx", str(folder), str(tmp), variant],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise OnnxExportError(f"{variant} ONNX export of {folder} failed:\n{done.stderr[-2000:]}")
        tmp.chmod(0o755)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_onnx(folder: Path, out: Path, variant: str = "int8") -> None:
    """Export `folder` (transformer + pooling + normalize) to ``out/<MODEL_FILES[variant]>``:
    fused fp32, then for 'int8' quantized; for 'openvino' the plain export as OpenVINO IR, for
    'openvino-int8' that IR with int8 weights (NNCF). Needs torch, transformers, onnx and
    onnxruntime (or openvino, and nncf for 'openvino-int8'); no network.
    Usage: ``python -m qa.embed_onnx FOLDER OUT [int8|fp32|openvino|openvino-int8]``
    """
    mode = pooling_mode(folder)
    raw, fused = out / "raw.onnx", out / "fused.onnx"
    _torch_export(folder, raw, mode)
    if variant.startswith("openvino"):
        from qa.embed_openvino import convert

        convert(raw, out / MODEL_FILES[variant], int8_weights=variant == "openvino-int8")
        raw.unlink()
        return _write_marker(folder, out, mode, variant)
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = json.loads((folder / "config.json").read_text())
    optimize_model(str(raw), model_type="bert", num_heads=cfg["num_attention_heads"],
                   hidden_size=cfg["hidden_size"], opt_level=1).save_model_to_file(str(fused))
    raw.unlink()
    if variant == "int8":
        _quantize(fused, out / MODEL_FILES["int8"])
        fused.unlink()
    else:
        fused.rename(out / MODEL_FILES["fp32"])
    _write_marker(folder, out, mode, variant)


def _write_marker(folder: Path, out: Path, mode: str, variant: str) -> None:
    (out / MARKER_FILE).write_text(json.dumps({
        "source": str(folder), "export_version": EXPORT_VERSION, "pooling": mode, "variant": variant,
        "recipe": RECIPES[variant],
    }, indent=2) + "\n")


def _torch_export(folder: Path, path: Path, mode: str) -> None:
    """The model with its pooling and normalization as one fp32 ONNX graph at `path`."""
    import warnings

    import torch
    from transformers import AutoModel

    # eager attention exports the plain MatMul/Softmax pattern that ONNX Runtime fuses into Attention
    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if mode == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(model), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes=axes, opset_version=17)


def _quantize(fused: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Attention", "EmbedLayerNormalization"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


class OnnxEncoder:
    """An ONNX export of a model folder (`variant` 'fp32' or 'int8') on ONNX Runtime's CPU
    provider, with `threads` intra-op threads per model call (0: ONNX Runtime's default, one per
    physical core); see the module docstring.

    Usage: ``OnnxEncoder(folder, model_cache_dir() / "onnx-fp32", "fp32").encode(["query: 衡阳"], 32)``
    """

    device = "cpu"
    # Small model calls: at most 8 texts and 512 padded tokens (one ~300-token passage, or a few
    # answer sentences). On 2 AVX2 cores, CPU ms per text against 32 texts / 8192 tokens per
    # call: seed passages fp32 170 vs 324, int8 109 vs 220; a cold answer's 34 sentences fp32
    # 1.07 s vs 2.5 s; a question 18 vs 24 ms (`benchmarks/query_embed.py`). Larger calls spill
    # the activations out of the caches and pad short texts to long ones.
    batch_size = 8
    max_batch_tokens = 512

    def __init__(self, folder: Path, cache_dir: Path, variant: str = "int8", threads: int = 0):
        import onnxruntime as ort

        folder = Path(folder)
        onnx_file = ensure_onnx_model(folder, cache_dir, variant)
        self.variant, self.backend, self.threads = variant, f"onnx-{variant}", threads
        # int8 quantizes activations with one scale per model call, so a text's vector depends a
        # little on the texts it shares a call with: calls from different requests must not merge,
        # or the same question could get a different answer under load. fp32 masks padding out.
        self.batch_invariant = variant == "fp32"
        self.dim = int(_read_json(folder / "config.json")["hidden_size"])
        self.max_seq_length = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 512)
        self.prompts = dict(_read_json(folder / "config_sentence_transformers.json").get("prompts") or {})
        self.tokenizer, self.pad_id = load_tokenizer(folder, self.max_seq_length)
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False  # the arena would keep the largest batch's buffers for good
        options.intra_op_num_threads = max(0, int(threads))
        options.inter_op_num_threads = 1
        # idle worker threads sleep instead of spinning: on a shared or busy machine spinning
        # threads take the cores the working ones need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime's own exception types (InvalidProtobuf, Fail, …)
            raise OnnxExportError(f"ONNX Runtime cannot load {onnx_file}: {str(e)[-1000:]}") from e

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for `texts` as given (prefixes included); see `encode_ids`."""
        encodings = self.tokenizer.encode_batch(texts)  # Rust, GIL released; truncated, not padded
        return self.encode_ids([np.asarray(e.ids, np.int64) for e in encodings], batch_size)

    def encode_ids(self, ids: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Vectors for tokenized texts, in batches of similar token length; long texts go in
        smaller batches (at most `max_batch_tokens` tokens of padded input), which bounds the
        attention buffers, and so peak memory, whatever the texts."""
        from qa.embed import length_batches, pad_ids

        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        out = np.empty((len(ids), self.dim), np.float32)
        for idx in length_batches(lengths, batch_size, self.max_batch_tokens):
            input_ids, mask = pad_ids([ids[i] for i in idx], self.pad_id)
            out[idx] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_tokenizer(folder: Path, max_length: int):
    """(tokenizer, padding id): the folder's fast tokenizer as sentence-transformers applies it
    (truncation, ``split_special_tokens``), through `tokenizers` alone: transformers would pull
    in torch (~300 MB) and hold a second copy of the vocabulary.

    Usage: ``tok, pad_id = load_tokenizer(folder, 512); tok.encode_batch(["passage: 衡阳"])[0].ids``
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = _read_json(folder / "tokenizer_config.json")
    special = _read_json(folder / "special_tokens_map.json")
    if config.get("split_special_tokens"):
        tok.encode_special_tokens = True
    pad = config.get("pad_token") or special.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = tok.token_to_id(pad) if pad else None
    if pad_id is None:
        raise OnnxExportError(f"{folder}: the tokenizer names no padding token")
    tok.enable_truncation(max_length=min(max_length, int(config.get("model_max_length") or max_length)))
    tok.no_padding()  # `OnnxEncoder.encode` pads each batch to its own longest text
    return tok, pad_id


if __name__ == "__main__":  # the child process of `ensure_onnx_model`
    export_onnx(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "int8")
