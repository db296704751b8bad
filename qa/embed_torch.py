"""embed_torch: the `Encoder` that runs a model with sentence-transformers on PyTorch.

fp32 on CPU; fp16 on CUDA (twice the throughput, cosine to fp32 ≈ 1.0). Texts arrive with their
query/passage prefix already in place, so no model prompt is applied here.

Usage::

    enc = TorchEncoder(folder, device="cpu")
    V = enc.encode(["passage: 衡阳日报…"], batch_size=32)   # (n, enc.dim) float32, L2-normalized
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchEncoder:
    """A `SentenceTransformer` on one device; see the module docstring."""

    def __init__(self, path: Path, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in CLI output
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model.eval()
        if device == "cuda":
            self.model.half()
        self.device = device
        self.backend = "torch-fp16" if device == "cuda" else "torch-fp32"
        self.batch_size = 256 if device == "cuda" else 32
        self.batch_invariant = True  # padding is masked out: merging callers' texts changes nothing
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_seq_length = int(self.model.max_seq_length)
        self.prompts = dict(getattr(self.model, "prompts", None) or {})

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for `texts` as given (prefixes included); sentence-transformers sorts by length."""
        out = self.model.encode(
            texts, prompt="",  # "" stops a model's default prompt from applying: prefixes are in `texts`
            batch_size=batch_size, show_progress_bar=False,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(out, dtype=np.float32)
