#!/usr/bin/env bash
# Reproduce the README's side-by-side results for the embedded default model and its shipped heads:
# MT-bench (all 80 questions, both turns) at temperature 0 and 1 with every method, and a Spec-Bench
# sample (the first N questions of each of its 13 categories) for Kangaroo beside Jakiro and EAGLE-2.
# Each run interleaves its contenders per question in one process and resumes when rerun.
# Usage: scripts/benchmark_default_heads.sh [OUTDIR] [MAX_NEW_TOKENS] [SPEC_PER_CATEGORY]
#   RUNS="mt0 mt1 spec" picks runs; THREADS (default 1) threads per run. JAKIRO_HEAD, EAGLE2_HEAD,
#   STAR_HEAD and KANGAROO_HEAD replace the shipped heads (folders or aliases), e.g. freshly trained ones.
#   Two runs started side by side share the CPU: their tokens/s drop; the ratios inside each run stay comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-eval_metric/results}
TOKENS=${2:-48}
PER_CATEGORY=${3:-3}
RUNS=${RUNS:-"mt0 mt1 spec"}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${THREADS:-1}
HEADS=(--ea-model-path "${JAKIRO_HEAD:-jakiro-smollm2-135m-instruct}" --eagle-model-path "${EAGLE2_HEAD:-eagle2-smollm2-135m-instruct}"
       --star-model-path "${STAR_HEAD:-jakiro-star-smollm2-135m-instruct}" --head "kangaroo=${KANGAROO_HEAD:-kangaroo-smollm2-135m-instruct}")
COMMON=(--base-model-path smollm2-135m-instruct --max-new-token "$TOKENS" --total-token -1 --no-progress)

for run in $RUNS; do
  case $run in
    mt0) $PY -m jakiro.evaluation.compare "${COMMON[@]}" "${HEADS[@]}" --bench-name mt_bench --temperature 0 \
           --contenders hf,hf-compiled,naive,eagle2,jakiro,jakiro-star,jakiro-star-dynamic,kangaroo \
           --output-dir "$OUT/mt_bench_t0" ;;
    mt1) $PY -m jakiro.evaluation.compare "${COMMON[@]}" "${HEADS[@]}" --bench-name mt_bench --temperature 1 \
           --contenders hf,naive,eagle2,jakiro,jakiro-star,jakiro-star-dynamic,kangaroo \
           --output-dir "$OUT/mt_bench_t1" ;;
    spec) $PY -m jakiro.evaluation.compare "${COMMON[@]}" "${HEADS[@]}" --bench-name spec_bench --temperature 0 \
           --per-category "$PER_CATEGORY" --contenders hf,naive,eagle2,jakiro,kangaroo \
           --output-dir "$OUT/spec_bench_t0" ;;
    *) echo "unknown run '$run' (choose from mt0 mt1 spec)" >&2; exit 2 ;;
  esac
done
