#!/usr/bin/env bash
# Side-by-side benchmark at both temperatures: HF generate, the plain loop, HF prompt lookup, and the
# EAGLE-2 / Jakiro / Jakiro* heads that are given (a Jakiro* head runs as two contenders: static and dynamic
# tree), interleaved per question; then figures over both runs.
#
# usage: eval_metric/compare_all.sh --base-model PATH --out-dir DIR [--ea-model PATH] [--eagle-model PATH]
#            [--star-model PATH] [--bench mt_bench] [--temperatures "0.0 1.0"]
#            [-- EXTRA ARGS for compare, e.g. --total-token -1 --max-new-token 256 --contenders hf,naive,jakiro]
#
# Writes DIR/compare-BENCH-temperature-T/{compare.json,compare.md,answers/,figs/} and DIR/figs/*.png.
# The interpreter is $PYTHON (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

base="" out="" head="" eagle="" star="" bench="mt_bench" temps="0.0 1.0"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base-model) base="$2"; shift 2 ;;
    --out-dir) out="$2"; shift 2 ;;
    --ea-model) head="$2"; shift 2 ;;
    --eagle-model) eagle="$2"; shift 2 ;;
    --star-model) star="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --temperatures) temps="$2"; shift 2 ;;
    -h|--help) usage_from_header "$0"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$base" || -z "$out" ]]; then
  echo "error: --base-model and --out-dir are required (see --help)" >&2
  exit 2
fi
py="${PYTHON:-python}"
tag="$(bench_tag "$bench")"
heads=()
[[ -n "$head" ]] && heads+=(--ea-model-path "$head")
[[ -n "$eagle" ]] && heads+=(--eagle-model-path "$eagle")
[[ -n "$star" ]] && heads+=(--star-model-path "$star")

reports=()
for t in $temps; do
  run="$out/compare-$tag-temperature-$t"
  "$py" -m jakiro.evaluation.compare --base-model-path "$base" ${heads[@]+"${heads[@]}"} --bench-name "$bench" \
    --temperature "$t" --output-dir "$run" ${extra[@]+"${extra[@]}"}
  reports+=("$run/compare.json")
done
"$py" -m jakiro.evaluation.plot "${reports[@]}" --out-dir "$out/figs" --prefix "compare-$tag-"
