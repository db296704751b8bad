#!/usr/bin/env bash
# On the GPU machine, after benchmarks/gpu_embed.sh (same carried benchmarks/.gpu): `qa serve` over
# the seed pages under load (benchmarks/load.py: 1 then 32 clients), with the e5-small architecture
# at random weights (true speed, meaningless answers). First with the server's default number of
# processes (no --workers: what `make serve` starts), then with each count in $WORKERS.
# JSON per run in $OUT/load_*.json.
set -euo pipefail
PY=${PYTHON:-python3}
$PY -c "import fastapi, uvicorn, sse_starlette, httpx, typer, pytest, pydantic_settings" 2>/dev/null ||
  $PY -m pip install -q --no-index --find-links benchmarks/.gpu/wheels fastapi uvicorn sse-starlette httpx typer \
    pytest pydantic-settings
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=$PWD
QA_EMBED_MODEL=$($PY benchmarks/gpu_embed.py model 2>/dev/null | tail -1)
export QA_EMBED_MODEL
OUTDIR=${OUT:-.}
for w in default ${WORKERS-1}; do
  flag=(); [ "$w" = default ] || flag=(--workers "$w")
  timeout "${LOAD_TIMEOUT:-240}" $PY benchmarks/load.py --clients 1,32 --seconds "${SECONDS_EACH:-15}" "${flag[@]}" \
    > "$OUTDIR/load_$w.json" 2> "$OUTDIR/load_$w.err" || echo "load.py ($w) failed: see load_$w.err"
  cat "$OUTDIR/load_$w.json"
done
