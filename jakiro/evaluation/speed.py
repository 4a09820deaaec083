"""Speed table from answer files alone: tokens/s, speedup over a baseline, τ and per-depth α, per category.

Reads this library's answer files and the FastChat-style files the original Jakiro/EAGLE scripts
wrote (``new_tokens``, ``idxs``, ``wall_time``), so published logs can be recomputed.

    python -m jakiro.evaluation.speed answers/mt_bench/jakiro-*.jsonl \\
        --baseline answers/mt_bench/naive-*.jsonl --output speed.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..version import __version__
from .answer_sets import AnswerSet, TurnStats, load_answer_set
from .cli import run_main
from .files import write_json_atomic, write_text_atomic
from .metrics import OVERALL, summarize_against
from .tables import fmt, fmt_alpha, markdown_table

# Settings that must agree between a method file and its baseline for a fair speedup.
COMPARABLE_SETTINGS = ("temperature", "top_p", "top_k", "max_new_token", "dtype", "base_model", "bench")

DEFINITIONS = {
    "tokens_per_second": "total new tokens / total wall time over the set's turns",
    "speedup": "tokens_per_second(method) / tokens_per_second(baseline) over the same questions",
    "speedup_published": "mean per-question rate of the method / of the baseline (original scripts)",
    "tau": "mean over verification rounds of tokens produced per round (accepted drafts + bonus token)",
    "tau_published": "mean over questions of sum(new_tokens) / sum(idxs) (original scripts; idxs = rounds - 1)",
    "alpha": "alpha[k-1] = rounds accepting >= k drafts / rounds accepting >= k-1 drafts",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("answer_files", nargs="+", help="answer JSONL file(s) of the method(s)")
    parser.add_argument("--baseline", default=None, help="answer JSONL of the baseline (for speedups)")
    parser.add_argument("--bench-name", default=None,
                        help="question set giving categories to files that lack them (mt_bench, spec_bench, path)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder or model alias, to recount tokens of files that store none "
                             "(original baseline files)")
    parser.add_argument("--labels", default=None, help="comma-separated names for the answer files")
    parser.add_argument("--output", default="speed.json", help="JSON output (default speed.json)")
    parser.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare files with different questions or settings (only common questions count)")
    return parser


def load_tokenizer(name: str | None):
    if name is None:
        return None
    from transformers import AutoTokenizer

    from ..base_models import DEFAULT_BASE_MODEL, resolve_base_model_path

    folder = resolve_base_model_path(name) if name.lower() == DEFAULT_BASE_MODEL else name
    if not Path(folder).is_dir():
        raise ConfigError(f"tokenizer {name!r} not found: pass a tokenizer or model folder, or {DEFAULT_BASE_MODEL!r}")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from {name!r} ({str(err).splitlines()[0]})") from None


def _sample(ids: set) -> str:
    return ", ".join(repr(i) for i in sorted(ids, key=str)[:5]) + (" ..." if len(ids) > 5 else "")


def check_comparable(method: AnswerSet, baseline: AnswerSet, allow_mismatch: bool) -> set:
    """The question ids to compare; a clear error when the files do not answer the same thing."""
    only_m, only_b = method.question_ids - baseline.question_ids, baseline.question_ids - method.question_ids
    problems = []
    if only_m or only_b:
        problems.append(f"{len(only_m)} question(s) only in {method.path} ({_sample(only_m)}), "
                        f"{len(only_b)} only in {baseline.path} ({_sample(only_b)})")
    ms, bs = method.settings, baseline.settings
    diffs = [f"{k} {ms[k]!r} vs {bs[k]!r}" for k in COMPARABLE_SETTINGS if k in ms and k in bs and ms[k] != bs[k]]
    if method.meta and baseline.meta and method.meta.get("device") != baseline.meta.get("device"):
        diffs.append(f"device {method.meta.get('device')!r} vs {baseline.meta.get('device')!r}")
    if diffs:
        problems.append("settings differ: " + "; ".join(diffs))
    common = method.question_ids & baseline.question_ids
    if problems and not allow_mismatch:
        raise ConfigError(f"mismatched files: {' and '.join(problems)}: "
                          "answer the same questions with the same settings, or pass --allow-mismatch")
    if not common:
        raise ConfigError(f"{method.path} and {baseline.path} share no question")
    return common


def _only(turns: list[TurnStats], ids: set) -> list[TurnStats]:
    return [t for t in turns if t.question_id in ids]


def evaluate(method: AnswerSet, baseline: AnswerSet | None, allow_mismatch: bool = False) -> dict[str, dict]:
    """Per-category summaries of one method file (against the baseline when given)."""
    method_turns, base_turns = method.turns, None
    if baseline is not None:
        common = check_comparable(method, baseline, allow_mismatch)
        method_turns, base_turns = _only(method.turns, common), _only(baseline.turns, common)
    return summarize_against(method_turns, base_turns, method.settings.get("max_path_drafts"))


def _describe(answers: AnswerSet) -> dict:
    return {"path": answers.path, "model_id": answers.model_id, "format": answers.format, "meta": answers.meta,
            "tokens_recounted": any(t.tokens_recounted for t in answers.turns)}


def category_table(summary: dict[str, dict]) -> str:
    headers = ["category", "questions", "new tokens", "tokens/s", "speedup", "tau", "alpha (depth 1..K)"]
    rows = [[name, fmt(s["questions"]), fmt(s["new_tokens"]), fmt(s["tokens_per_second"]), fmt(s.get("speedup")),
             fmt(s["tau"]), fmt_alpha(s["alpha"])] for name, s in summary.items()]
    return markdown_table(headers, rows)


def overview_table(methods: list[dict]) -> str:
    headers = ["method", "tokens/s", "speedup", "tau", "speedup (published formula)", "tau (published formula)"]
    rows = []
    for entry in methods:
        s = entry["overall"]
        rows.append([entry["label"], fmt(s["tokens_per_second"]), fmt(s.get("speedup")), fmt(s["tau"]),
                     fmt(s.get("speedup_published")), fmt(s["tau_published"])])
    return markdown_table(headers, rows)


def render(report: dict) -> str:
    parts = []
    if report["baseline"]:
        parts.append(f"baseline: {report['baseline']['model_id']} ({report['baseline']['path']})\n")
    for entry in report["methods"]:
        table = category_table({**entry["categories"], OVERALL: entry["overall"]})
        parts.append(f"## {entry['label']} ({entry['path']})\n\n{table}")
    parts.append(f"## overall\n\n{overview_table(report['methods'])}")
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    from .questions import categories_by_id

    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.answer_files):
        raise ConfigError(f"--labels names {len(labels)} file(s) but {len(args.answer_files)} answer file(s) are given")
    categories = categories_by_id(args.bench_name) if args.bench_name else None
    tokenizer = load_tokenizer(args.tokenizer)
    baseline = load_answer_set(args.baseline, categories, tokenizer) if args.baseline else None
    methods = []
    for i, path in enumerate(args.answer_files):
        answers = load_answer_set(path, categories, tokenizer)
        summary = evaluate(answers, baseline, args.allow_mismatch)
        methods.append({"label": labels[i] if labels else answers.model_id, **_describe(answers),
                        "overall": summary[OVERALL],
                        "categories": {k: v for k, v in summary.items() if k != OVERALL}})
    report = {"kind": "jakiro-speed", "library_version": __version__, "definitions": DEFINITIONS,
              "baseline": _describe(baseline) if baseline else None, "methods": methods}
    text = render(report)
    print(text)
    write_json_atomic(args.output, report)
    if args.markdown:
        write_text_atomic(args.markdown, text)
    print(f"written {args.output}" + (f" and {args.markdown}" if args.markdown else ""), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
