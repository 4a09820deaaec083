#!/usr/bin/env bash
# Full speed evaluation of one method for one model: baseline and method answers at both temperatures on
# every category of a bench, then the speed table (Markdown + JSON) and figures.
#
# usage: eval_metric/eval_method.sh --base-model PATH --ea-model PATH --out-dir DIR
#            [--bench spec_bench] [--temperatures "0.0 1.0"] [--baseline-engine naive] [--name NAME]
#            [-- EXTRA ARGS for both answer commands, e.g. --total-token -1 --dtype float16 --device cuda]
#
# Writes DIR/answers/BENCH/*.jsonl, DIR/speed-BENCH-NAME-temperature-T.{json,md} and DIR/figs/*.png.
# Answer files are resumed when rerun. The interpreter is $PYTHON (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

base="" head="" out="" bench="spec_bench" temps="0.0 1.0" engine="naive" name=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base-model) base="$2"; shift 2 ;;
    --ea-model) head="$2"; shift 2 ;;
    --out-dir) out="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --temperatures) temps="$2"; shift 2 ;;
    --baseline-engine) engine="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    -h|--help) usage_from_header "$0"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$base" || -z "$head" || -z "$out" ]]; then
  echo "error: --base-model, --ea-model and --out-dir are required (see --help)" >&2
  exit 2
fi
py="${PYTHON:-python}"
name="${name:-$(basename "${head%/}")}"
tag="$(bench_tag "$bench")"
answers="$out/answers/$tag"
mkdir -p "$answers" "$out/figs"

reports=()
for t in $temps; do
  baseline_id="baseline-$engine-temperature-$t"
  method_id="$name-temperature-$t"
  "$py" -m jakiro.evaluation.gen_baseline_answer --base-model-path "$base" --bench-name "$bench" \
    --temperature "$t" --baseline-engine "$engine" --model-id "$baseline_id" \
    --answer-file "$answers/$baseline_id.jsonl" ${extra[@]+"${extra[@]}"}
  "$py" -m jakiro.evaluation.gen_ea_answer --base-model-path "$base" --ea-model-path "$head" --bench-name "$bench" \
    --temperature "$t" --model-id "$method_id" --answer-file "$answers/$method_id.jsonl" ${extra[@]+"${extra[@]}"}
  report="$out/speed-$tag-$name-temperature-$t"
  "$py" -m jakiro.evaluation.speed "$answers/$method_id.jsonl" --baseline "$answers/$baseline_id.jsonl" \
    --bench-name "$bench" --labels "$name (T=$t)" --output "$report.json" --markdown "$report.md"
  reports+=("$report.json")
done
"$py" -m jakiro.evaluation.plot "${reports[@]}" --out-dir "$out/figs" --prefix "$tag-$name-"
