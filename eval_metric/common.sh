# Helpers sourced by the eval_metric scripts (not run on its own).

# bench_tag BENCH: a short name for a bench: mt_bench -> mt_bench, data/x/question.jsonl -> x, y.jsonl -> y.
bench_tag() {
  local bench="${1%/}"
  if [[ "$(basename "$bench")" == "question.jsonl" ]]; then
    basename "$(dirname "$bench")"
  elif [[ -d "$bench" ]]; then
    basename "$bench"
  else
    basename "$bench" .jsonl
  fi
}

# usage_from_header FILE: print the comment block at the top of FILE (after the shebang).
usage_from_header() {
  sed -n '2,/^[^#]/p' "$1" | sed '$d' | sed 's/^# \{0,1\}//'
}
