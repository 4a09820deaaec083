#!/usr/bin/env bash
# Reproduce the shipped heads for the embedded default model (SmolLM2-135M-Instruct) on one data set,
# the base model's own answers (scripts/make_selfdistill_data.sh): a Jakiro head and an EAGLE-2 baseline
# head with the same data, steps and settings, a Jakiro* head with the same data and budget (its own
# draft section, same train section), and a Kangaroo adapter on the same data (the shallow layers'
# hidden states are saved with it). Every step resumes when rerun.
# Usage: scripts/train_default_heads.sh WORKDIR [MAX_SAMPLES] [EPOCHS]
#   ROLLOUT=K trains the Jakiro and EAGLE-2 heads with K-step training-time rollout (1 = the papers' recipe).
#   FINETUNE="SAMPLES:EPOCHS:LR[:K[:W[:C[:H]]]] ..." adds fine-tuning stages for the Jakiro and EAGLE-2 heads, in
#   order: each trains on the first SAMPLES prompts' data for EPOCHS more epochs at LR (with K-step rollout, default
#   ROLLOUT; --answer-start-weight W, default 1; for the Jakiro head, --contrastive-weight C, default 0.5; and with H,
#   --holdout-from the first H prompts' view, so a stage on grown data keeps the earlier stages' held-out
#   conversations out of training), starting from the previous stage's head (--init-head, fresh optimiser), into
#   WORKDIR/jakiro_ftN and WORKDIR/eagle2_ftN (N = 1, 2, ...). An empty field keeps its default ("8832:1:3e-4:2:3::7008").
#   SAMPLES may instead be a shard range, "sFIRST-LAST" (e.g. s94-157): the stage trains on just those shards (the
#   data added since the previous stages) and holds out their last 5%; H may be a shard range too ("s94-157": that
#   view's held-out split stays out, so a later range stage is measured on the same conversations).
#   The data is generated once, into WORKDIR/data_all (answers already committed are reused, only their
#   features recomputed); every stage reads a view of its first shards, WORKDIR/data_SAMPLES.
#   The shipped heads:
#     FINETUNE="3840:3:5e-4 4704:3:4e-4 6240:2:4e-4 7008:1:3e-4:2 7008:1:2e-4:2:3 7008:1:3e-4:2:3:0.2 7008:1:3e-4:2:3:0.2 8832:1:3e-4:2:3:0.2:7008 s94-157:1:3e-4:2:3:0.2 s154-191:1:3e-4:2:3:0.2:s94-157 s154-202:1:2e-4:2:3:0.2:s94-157" \
#       REVOCAB="16384:94-153,158-199,201:10" KANGAROO_FINETUNE="7008:2:5e-4" \
#       STAR_FINETUNE="s94-201:1:5e-4:3:s94-157:1000:16384" scripts/train_default_heads.sh WORK 1728 3
#   (Jakiro and EAGLE-2: 18 shards for 3 epochs, the first 40 shards for 3 more, the first 49 for 3 more, the
#   first 65 for 2 more, then the first 73 shards, 6,894 conversations, for one more with 2-step rollout, one more
#   with 2-step rollout and --answer-start-weight 3, two more at lr 3e-4 with Jakiro's contrastive branch weighted
#   0.2, a ninth stage on all 92 committed shards, 8,687 conversations, with the 73 shards' held-out
#   conversations still held out, a tenth on shards 94-157 alone, 6,051 new conversations, and an eleventh on shards
#   158-191, 3,232 new conversations, with the tenth stage's held-out split still held out: the view is 154-191 because
#   --holdout-from needs a view that contains the held-out shards; then REVOCAB widens both heads' draft
#   vocabularies to 16,384 tokens, no training, and a twelfth stage on shards 154-202 at lr 2e-4 trains over those
#   16,384 tokens: 1,585,419 tokens, shards 192-202 new).
#   `scripts/train_default_heads.sh WORK 1728 3` is the same-data, same-budget run behind README's method
#   comparison (the first 18 shards, 3 epochs, bf16 on CPU); the shipped Jakiro* head adds
#   STAR_FINETUNE="s94-201:1:5e-4:3:s94-157:1000:16384" (1,000 batches of shards 94-201, held-out split of the
#   94-157 view kept out, vocabulary widened to 16,384 tokens; shard 200 was not generated when it was trained),
#   the shipped Kangaroo adapter KANGAROO_FINETUNE="7008:2:5e-4" (2 more epochs on all 73 shards).
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
SHARD_SIZE=96  # prompts per shard in scripts/make_selfdistill_data.sh

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

# One generation run covers every stage (the largest sample count); each stage trains on a view of its first
# shards (jakiro.ge_data.subset), so the stages' conversations are nested and each held-out split is fixed.
largest=$SAMPLES
for spec in ${FINETUNE:-} ${KANGAROO_FINETUNE:-} ${STAR_FINETUNE:-}; do
  samples=${spec%%:*}
  [[ "$samples" == s* ]] && samples=$(( (${samples##*-} + 1) * SHARD_SIZE ))
  [ "$samples" -gt "$largest" ] && largest=$samples
done
PYTHON=$PY bash scripts/make_selfdistill_data.sh "$WORK/data_all" --max-samples "$largest"
# subset_of SAMPLES: the folder holding the first SAMPLES prompts' shards (96 prompts per shard), or the shards
# FIRST..LAST for SAMPLES = sFIRST-LAST
subset_of() {
  if [[ "$1" == s* ]]; then
    $PY -m jakiro.ge_data.subset --data "$WORK/data_all" --shard-ranges "${1#s}" --out "$WORK/data_$1" >&2
    echo "$WORK/data_$1"
    return
  fi
  local shards=$(( ($1 + SHARD_SIZE - 1) / SHARD_SIZE ))
  $PY -m jakiro.ge_data.subset --data "$WORK/data_all" --shards "$shards" --out "$WORK/data_$1" >&2
  echo "$WORK/data_$1"
}
DATA=$(subset_of "$SAMPLES")
for head in jakiro eagle2; do
  train_core_head "$head" "$DATA" "$WORK/$head" --epochs "$EPOCHS"
done
IFS=: read -r revocab_size revocab_ranges revocab_after <<< "${REVOCAB:-}"
# widen_heads STAGE: the REVOCAB widening of both heads as they are after FINETUNE stage STAGE (0: before any)
widen_heads() {
  local counted="$WORK/data_vocab_${revocab_ranges//,/_}" from
  $PY -m jakiro.ge_data.subset --data "$WORK/data_all" --shard-ranges "$revocab_ranges" --out "$counted" >&2
  for name in jakiro eagle2; do
    from="$WORK/$name"
    [ "$1" -gt 0 ] && from="$WORK/${name}_ft$1"
    $PY -m jakiro.train.revocab --head "$from/head" --data "$counted" --draft-vocab-size "$revocab_size" \
        --out "$WORK/${name}_v$revocab_size/head"
  done
}
stage=0
for spec in ${FINETUNE:-}; do
  IFS=: read -r samples epochs lr stage_rollout start_weight contrastive_weight holdout_samples <<< "$spec"
  stage=$((stage + 1))
  stage_data=$(subset_of "$samples")
  holdout_flags=()
  [ -n "${holdout_samples:-}" ] && holdout_flags=(--holdout-from "$(subset_of "$holdout_samples")")
  [ -n "$revocab_after" ] && [ "$revocab_after" = $((stage - 1)) ] && widen_heads "$revocab_after"
  for head in jakiro eagle2; do
    previous="$WORK/$head"
    head_flags=()
    [ "$head" = jakiro ] && [ -n "${contrastive_weight:-}" ] && head_flags=(--contrastive-weight "$contrastive_weight")
    [ "$stage" -gt 1 ] && previous="$WORK/${head}_ft$((stage - 1))"
    if [ -n "$revocab_after" ] && [ "$stage" -gt "$revocab_after" ]; then
      head_flags+=(--draft-vocab-size "$revocab_size")
      [ "$stage" = $((revocab_after + 1)) ] && previous="$WORK/${head}_v$revocab_size"
    fi
    ROLLOUT=${stage_rollout:-$ROLLOUT} train_core_head "$head" "$stage_data" "$WORK/${head}_ft$stage" \
        --epochs "$epochs" --lr "$lr" --init-head "$previous/head" --answer-start-weight "${start_weight:-1}" \
        "${head_flags[@]}" "${holdout_flags[@]}"
  done
done
resume=()
[ -f "$WORK/jakiro_star/progress.json" ] && resume=(--resume)
$PY -m jakiro_star.train.main --data "$DATA" --base-model-path smollm2-135m-instruct --config "$STAR_CONFIG" --epochs "$EPOCHS" \
    --dtype bf16 --tau-prompts 6 --out "$WORK/jakiro_star" "${resume[@]}"
# STAR_FINETUNE="SAMPLES:EPOCHS:LR[:W[:H[:STEPS[:VOCAB[:K]]]]]" fine-tunes that Jakiro* head once (--init-head, fresh
# optimiser) into WORKDIR/jakiro_star_ft1: SAMPLES and H as in FINETUNE, --answer-start-weight W, at most STEPS
# batches (--max-steps), a draft vocabulary widened to VOCAB tokens (--draft-vocab-size), K-step training-time
# rollout with one chain per expert (--rollout-steps; default 1; jakiro_star/train/unroll.py).
if [ -n "${STAR_FINETUNE:-}" ]; then
  IFS=: read -r samples epochs lr start_weight holdout_samples max_steps vocab star_rollout <<< "$STAR_FINETUNE"
  star_flags=()
  [ -n "${star_rollout:-}" ] && star_flags+=(--rollout-steps "$star_rollout")
  [ -n "${holdout_samples:-}" ] && star_flags+=(--holdout-from "$(subset_of "$holdout_samples")")
  [ -n "${max_steps:-}" ] && star_flags+=(--max-steps "$max_steps")
  [ -n "${vocab:-}" ] && star_flags+=(--draft-vocab-size "$vocab")
  resume=()
  [ -f "$WORK/jakiro_star_ft1/progress.json" ] && resume=(--resume)
  $PY -m jakiro_star.train.main --data "$(subset_of "$samples")" --base-model-path smollm2-135m-instruct \
      --config "$STAR_CONFIG" --epochs "$epochs" --lr "$lr" --answer-start-weight "${start_weight:-1}" --dtype bf16 \
      --tau-prompts 6 --init-head "$WORK/jakiro_star/head" --out "$WORK/jakiro_star_ft1" "${star_flags[@]}" "${resume[@]}"
fi
resume=()
[ -f "$WORK/kangaroo/progress.json" ] && resume=(--resume)
$PY -m kangaroo.train.main --data "$DATA" --base-model-path smollm2-135m-instruct --config "$KANGAROO_CONFIG" \
    --exit-layer "$KANGAROO_EXIT_LAYER" --threshold 0.4 --steps 3 --epochs "$EPOCHS" --dtype bf16 --out "$WORK/kangaroo" \
    "${resume[@]}"
# KANGAROO_FINETUNE="SAMPLES:EPOCHS:LR" fine-tunes that adapter on the first SAMPLES prompts' data (--init-head,
# fresh optimiser) into WORKDIR/kangaroo_ft1. The shipped adapter: KANGAROO_FINETUNE="7008:2:5e-4" (all 73 shards),
# drafting defaults then re-chosen with kangaroo.evaluation.replay (docs/kangaroo.md).
if [ -n "${KANGAROO_FINETUNE:-}" ]; then
  IFS=: read -r samples epochs lr <<< "$KANGAROO_FINETUNE"
  resume=()
  [ -f "$WORK/kangaroo_ft1/progress.json" ] && resume=(--resume)
  $PY -m kangaroo.train.main --data "$(subset_of "$samples")" --base-model-path smollm2-135m-instruct \
      --config "$KANGAROO_CONFIG" --exit-layer "$KANGAROO_EXIT_LAYER" --threshold 0.4 --steps 3 --epochs "$epochs" \
      --lr "$lr" --dtype bf16 --init-head "$WORK/kangaroo/head" --out "$WORK/kangaroo_ft1" "${resume[@]}"
fi
# REVOCAB="SIZE:RANGES[:STAGE]" widens the Jakiro and EAGLE-2 heads' draft vocabularies to SIZE tokens, the data's most
# frequent assistant tokens of shards RANGES (e.g. 94-153,158-199,201: no held-out shard) added to their own, into
# WORKDIR/<name>_v<SIZE>/head (jakiro.train.revocab; weights unchanged): after the last FINETUNE stage, or after stage
# STAGE, and then the later stages start from the widened heads and train over SIZE tokens (--draft-vocab-size).
# The shipped Kangaroo adapter keeps its 8,192 tokens: widened the same way it scored no better (held-out top-1
# 0.395 vs 0.396, eval_metric/results/s26/).
if [ -n "${REVOCAB:-}" ] && [ -z "$revocab_after" ]; then
  widen_heads "$stage"
fi
