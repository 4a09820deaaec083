#!/usr/bin/env bash
# Reproduce the shipped heads for the embedded default model (SmolLM2-135M-Instruct) on one data set,
# the base model's own answers (scripts/make_selfdistill_data.sh): a Jakiro head and an EAGLE-2 baseline
# head with the same data, steps and settings, a Jakiro* head with the same data and budget (its own
# draft section, same train section), and a Kangaroo adapter on the same data (the shallow layers'
# hidden states are saved with it). Every step resumes when rerun.
# Usage: scripts/train_default_heads.sh WORKDIR [MAX_SAMPLES] [EPOCHS]
#   ROLLOUT=K trains the Jakiro and EAGLE-2 heads with K-step training-time rollout (1 = the papers' recipe).
#   FINETUNE_SAMPLES=N adds a second stage for the Jakiro and EAGLE-2 heads: the first N conversations' data
#   (its own folder), FINETUNE_EPOCHS (3) more epochs from the first stage's head (--init-head) at FINETUNE_LR
#   (5e-4), into WORKDIR/jakiro_ft and WORKDIR/eagle2_ft.
#   The shipped Jakiro and EAGLE-2 heads: `FINETUNE_SAMPLES=3840 scripts/train_default_heads.sh WORK 1728 3`
#   (18 shards for 3 epochs, then all 40 shards, 1,009,167 assistant tokens, for 3 more).
#   `scripts/train_default_heads.sh WORK 1728 3` is the same-data, same-budget run behind the shipped Jakiro*
#   and Kangaroo heads and README's method comparison (the first 18 shards, 3 epochs, bf16 on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: $0 WORKDIR [MAX_SAMPLES] [EPOCHS]}
SAMPLES=${2:-4000}
EPOCHS=${3:-12}
ROLLOUT=${ROLLOUT:-1}
PY=${PYTHON:-.venv/bin/python}
CONFIG=jakiro/train/configs/smollm2-135m.json
STAR_CONFIG=jakiro_star/train/configs/smollm2-135m.json
KANGAROO_CONFIG=kangaroo/train/configs/smollm2-135m.json
KANGAROO_EXIT_LAYER=${KANGAROO_EXIT_LAYER:-2}   # one of the saved layers; see docs/kangaroo.md

# train_core_head HEAD DATA OUT [train options...]: a Jakiro or EAGLE-2 head, resuming OUT when it has progress
train_core_head() {
  local head=$1 data=$2 out=$3
  shift 3
  local extra=() resume=()
  [ "$head" = eagle2 ] && extra=(--num-experts 1 --no-contrastive)
  [ -f "$out/progress.json" ] && resume=(--resume)
  $PY -m jakiro.train.main --data "$data" --base-model-path smollm2-135m-instruct --config "$CONFIG" \
      --rollout-steps "$ROLLOUT" --dtype bf16 --tau-prompts 6 --out "$out" "$@" "${extra[@]}" "${resume[@]}"
}

PYTHON=$PY bash scripts/make_selfdistill_data.sh "$WORK/data" --max-samples "$SAMPLES"
for head in jakiro eagle2; do
  train_core_head "$head" "$WORK/data" "$WORK/$head" --epochs "$EPOCHS"
done
if [ -n "${FINETUNE_SAMPLES:-}" ]; then
  PYTHON=$PY bash scripts/make_selfdistill_data.sh "$WORK/data_ft" --max-samples "$FINETUNE_SAMPLES"
  for head in jakiro eagle2; do
    train_core_head "$head" "$WORK/data_ft" "$WORK/${head}_ft" --epochs "${FINETUNE_EPOCHS:-3}" \
        --lr "${FINETUNE_LR:-5e-4}" --init-head "$WORK/$head/head"
  done
fi
resume=()
[ -f "$WORK/jakiro_star/progress.json" ] && resume=(--resume)
$PY -m jakiro_star.train.main --data "$WORK/data" --base-model-path smollm2-135m-instruct --config "$STAR_CONFIG" --epochs "$EPOCHS" \
    --dtype bf16 --tau-prompts 6 --out "$WORK/jakiro_star" "${resume[@]}"
resume=()
[ -f "$WORK/kangaroo/progress.json" ] && resume=(--resume)
$PY -m kangaroo.train.main --data "$WORK/data" --base-model-path smollm2-135m-instruct --config "$KANGAROO_CONFIG" \
    --exit-layer "$KANGAROO_EXIT_LAYER" --threshold 0.4 --steps 3 --epochs "$EPOCHS" --dtype bf16 --out "$WORK/kangaroo" \
    "${resume[@]}"
