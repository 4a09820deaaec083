#!/usr/bin/env bash
# Reproduce the shipped heads for the embedded default model (SmolLM2-135M-Instruct):
# one data set, then a Jakiro head and an EAGLE-2 baseline head trained with the same data, steps
# and settings, a Jakiro* head with the same data and budget (its own draft section, same train section),
# and a Kangaroo adapter on the same data (its shallow layers' hidden states are saved
# with it: --save-layers). Usage: scripts/train_default_heads.sh WORKDIR [MAX_SAMPLES] [EPOCHS]
set -euo pipefail
WORK=${1:?usage: $0 WORKDIR [MAX_SAMPLES] [EPOCHS]}
SAMPLES=${2:-4000}
EPOCHS=${3:-6}
PY=${PYTHON:-python}
DATA_SRC=${DATA_SRC:-../shared/data/train/prompts.jsonl}
CONFIG=jakiro/train/configs/smollm2-135m.json
STAR_CONFIG=jakiro_star/train/configs/smollm2-135m.json
KANGAROO_CONFIG=kangaroo/train/configs/smollm2-135m.json
KANGAROO_EXIT_LAYER=${KANGAROO_EXIT_LAYER:-2}   # one of the saved layers; see docs/kangaroo.md

$PY -m jakiro.ge_data.allocation --data-path "$DATA_SRC" --base-model-path smollm2-135m-instruct \
    --outdir "$WORK/data" --max-samples "$SAMPLES" --max-length 1024 --shard-size 64 --tokens-per-batch 4096 \
    --save-layers 2,3,4
for head in jakiro eagle2; do
  extra=()
  [ "$head" = eagle2 ] && extra=(--num-experts 1 --no-contrastive)
  resume=()
  [ -f "$WORK/$head/progress.json" ] && resume=(--resume)
  $PY -m jakiro.train.main --data "$WORK/data" --base-model-path smollm2-135m-instruct --config "$CONFIG" \
      --epochs "$EPOCHS" --out "$WORK/$head" "${extra[@]}" "${resume[@]}"
done
resume=()
[ -f "$WORK/jakiro_star/progress.json" ] && resume=(--resume)
$PY -m jakiro_star.train.main --data "$WORK/data" --base-model-path smollm2-135m-instruct --config "$STAR_CONFIG" --epochs "$EPOCHS" --out "$WORK/jakiro_star" "${resume[@]}"
resume=()
[ -f "$WORK/kangaroo/progress.json" ] && resume=(--resume)
$PY -m kangaroo.train.main --data "$WORK/data" --base-model-path smollm2-135m-instruct --config "$KANGAROO_CONFIG" \
    --exit-layer "$KANGAROO_EXIT_LAYER" --epochs "$EPOCHS" --out "$WORK/kangaroo" "${resume[@]}"
