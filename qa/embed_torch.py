"""embed_torch: the `Encoder` that runs a model with sentence-transformers on PyTorch.

fp32 on CPU; fp16 on CUDA (twice the throughput, cosine to fp32 ≈ 1.0). Texts arrive with their
query/passage prefix already in place, so no model prompt is applied here. Tokenizing and the
model call are separate steps (`encode_ids`), so ingest can tokenize in its reader processes and
CPU batches can be cut by padded tokens, which bounds memory.

Usage::

    enc = TorchEncoder(folder, device="cpu")
    V = enc.encode(["passage: 衡阳日报…"], batch_size=32)   # (n, enc.dim) float32, L2-normalized
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchEncoder:
    """A `SentenceTransformer` on one device (`threads` > 0: that many CPU threads, process-wide);
    see the module docstring.

    Usage: ``TorchEncoder(folder, "cpu").encode(["query: 衡阳"], 32)``
    """

    def __init__(self, path: Path, device: str = "cpu", threads: int = 0):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in CLI output
        if device == "cpu" and threads > 0:
            import torch

            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model.eval()
        if device == "cuda":
            self.model.half()
        self.device = device
        self.backend = "torch-fp16" if device == "cuda" else "torch-fp32"
        # CUDA: 1,024 texts per call ran 1.9x the passages/s of 256 on an H100 (benchmarks/gpu_embed.py)
        self.batch_size = 1024 if device == "cuda" else 32
        self.batch_invariant = True  # padding is masked out: merging callers' texts changes nothing
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_seq_length = int(self.model.max_seq_length)
        self.prompts = dict(getattr(self.model, "prompts", None) or {})
        self.pad_id = self.model.tokenizer.pad_token_id
        # at most this many padded tokens per model call, so the attention buffers (and peak
        # memory) stay bounded however long the texts: on CPU 16 texts of 512 tokens or 256 short
        # ones; on CUDA 512 texts of 512 tokens
        self.max_batch_tokens = 262144 if device == "cuda" else 8192

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for `texts` as given (prefixes included): tokenized like sentence-transformers
        (truncated at `max_seq_length`), then `encode_ids`."""
        ids = self.model.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]
        return self.encode_ids(ids, batch_size)

    def encode_ids(self, ids: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Vectors for texts tokenized already (`qa.embed.PassageTokenizer`): padded per batch of
        similar length (longest first, `max_batch_tokens` at most) and run through the model's
        modules, as sentence-transformers' `encode` does after tokenizing."""
        import torch

        from qa.embed import length_batches, pad_ids

        out = np.empty((len(ids), self.dim), np.float32)
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        with torch.inference_mode():
            for idx in length_batches(lengths, batch_size, self.max_batch_tokens):
                input_ids, mask = pad_ids([ids[i] for i in idx], self.pad_id)
                features = {"input_ids": torch.from_numpy(input_ids).to(self.device),
                            "attention_mask": torch.from_numpy(mask).to(self.device)}
                vectors = self.model(features)["sentence_embedding"].float()
                out[idx] = torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy()
        return out
