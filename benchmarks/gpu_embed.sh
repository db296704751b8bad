#!/usr/bin/env bash
# On the GPU machine (no network), from the repository root, with benchmarks/.gpu carried
# (made here by: python benchmarks/gpu_embed.py prepare). Installs what ingest needs from the
# carried wheels, then prints benchmarks/gpu_embed.py's JSON (also written to $OUT/gpu_embed.json).
set -euo pipefail
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -c "import faiss, jieba, bm25s, pydantic_settings" 2>/dev/null ||
  $PY -m pip install -q --no-index --find-links benchmarks/.gpu/wheels faiss-cpu jieba bm25s pydantic-settings
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false} PYTHONPATH=$PWD
timeout 420 $PY benchmarks/gpu_embed.py run "$@"
