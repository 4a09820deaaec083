#!/usr/bin/env bash
# The self-distilled training data of the shipped heads: SmolLM2-135M-Instruct's own greedy answers to
# the ShareGPT prompts (two user turns at most), with its features (last layer and layers 2,3,4 for
# Kangaroo) captured from the generating passes. Resumable: rerun to continue. The answers already made
# are committed under datasets/ and copied in first, so a fresh machine only recomputes their features
# (one cheap forward each) before generating new ones.
# Usage: scripts/make_selfdistill_data.sh [OUTDIR] [extra allocation options, e.g. --max-samples 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${JAKIRO_HOME:-$HOME/.cache/jakiro}/data/smollm2-selfdistill}
shift || true
PY=${PYTHON:-.venv/bin/python}
SAVED=datasets/smollm2-135m-instruct-selfdistill/conversations
mkdir -p "$OUT/conversations"
cp -n "$SAVED"/shard_*.jsonl "$OUT/conversations/" 2>/dev/null || true
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $PY -m jakiro.ge_data.allocation \
    --data-path ../shared/data/train/prompts.jsonl --base-model-path smollm2-135m-instruct --outdir "$OUT" \
    --regenerate --temperature 0 --max-turns 2 --max-length 1024 --max-new-tokens 384 --batch-size 48 \
    --shard-size 96 --save-layers 2,3,4 --dtype bfloat16 --skip-invalid "$@"
