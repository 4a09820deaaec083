"""Measure Kangaroo settings side by side: exit layer (one adapter per layer) x threshold x steps (x tree).

Loads the base model once; for every question the plain loop and every setting run one after the
other (interleaved, so machine drift hits all alike), through the shared answer code; answers are
kept per setting under OUTPUT/answers/ (a rerun resumes). The report (OUTPUT/sweep.json, sweep.md)
gives per setting: tokens/s and speedup over the plain loop, τ (tokens per round), drafted tokens per
round, the draft cost per drafted token and the cycle cost, both in plain decode steps (measured in
the same process), and the greedy agreement with the plain loop. Run it on a quiet machine: speeds
are only as good as the machine is idle.

    python -m kangaroo.evaluation.sweep --base-model-path smollm2-135m-instruct \\
        --adapter l2=runs/kangaroo-l2/head --adapter l3=runs/kangaroo-l3/head \\
        --thresholds 0.2,0.4,0.6,0.8 --steps 2,4,6 --bench-name mt_bench --question-end 10 \\
        --max-new-token 64 --output-dir sweeps/smollm2
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jakiro.base_models import DEFAULT_BASE_MODEL
from jakiro.commands import run_main
from jakiro.errors import ConfigError
from jakiro.evaluation.cli import (add_question_args, add_runtime_args, add_sampling_args, check_generation_args,
                                   device_map_for, dtype_name, model_name, sampling_settings)
from jakiro.evaluation.engines import SpeculativeEngine

from ..model.config import check_steps, check_threshold

REFERENCE = "naive"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kangaroo.evaluation.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--adapter", action="append", required=True, metavar="[NAME=]PATH",
                        help="Kangaroo adapter folder or alias (repeatable: one per exit layer to compare)")
    parser.add_argument("--thresholds", default="0.2,0.4,0.6,0.8", help="comma-separated thresholds")
    parser.add_argument("--steps", default="2,4,6", help="comma-separated max drafts per round")
    parser.add_argument("--tree-levels", default="0", help="comma-separated tree levels (0 = chain)")
    add_question_args(parser)
    add_sampling_args(parser)
    add_runtime_args(parser)
    parser.add_argument("--output-dir", default="kangaroo_sweep", help="answers/, sweep.json, sweep.md")
    return parser


def parse_list(text: str, kind, check, name: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"--{name} names no value")
    for value in values:
        check(value)
    return values


def parse_adapters(items: list[str]) -> dict[str, str]:
    adapters = {}
    for item in items:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (Path(item.rstrip("/")).name, item)
        if not name or not path or name in adapters:
            raise ConfigError(f"--adapter {item!r}: give each adapter once, as PATH or NAME=PATH")
        adapters[name] = path
    return adapters


def _check_levels(value: int) -> None:
    if value < 0:
        raise ConfigError(f"--tree-levels must be >= 0, got {value}")


@dataclass(frozen=True)
class Setting:
    adapter: str
    threshold: float
    steps: int
    tree_levels: int

    @property
    def name(self) -> str:
        tree = f"-tree{self.tree_levels}" if self.tree_levels else ""
        return f"{self.adapter}-t{self.threshold:g}-s{self.steps}{tree}"


class SettingEngine(SpeculativeEngine):
    """One setting on a shared `EaModel` (one per adapter): swaps its own drafter in, and sums the drafting
    work the answer files do not record (drafted tokens, tree nodes, draft time)."""

    def __init__(self, ea_model, setting: Setting):
        from ..model.drafter import KangarooDrafter

        self.drafter = KangarooDrafter(ea_model.ea_layer, ea_model._target, threshold=setting.threshold,
                                       steps=setting.steps, tree_levels=setting.tree_levels)
        super().__init__(ea_model, setting.name)
        self.setting = setting
        self.reset_statistics()

    def reset_statistics(self) -> None:
        """This setting's own drafting totals (its drafter is shared by nobody)."""
        self.totals = {"rounds": 0, "drafted": 0, "nodes": 0, "draft_time": 0.0}

    def generate(self, prompt, sampling, max_new_tokens):
        self.ea_model.drafter = self.drafter
        before = dict(self.drafter.counts)
        result = super().generate(prompt, sampling, max_new_tokens)
        for key in ("rounds", "drafted", "nodes"):
            self.totals[key] += self.drafter.counts[key] - before[key]
        self.totals["draft_time"] += result.draft_time or 0.0
        return result

    @property
    def max_path_drafts(self) -> int:
        return self.drafter.max_path_drafts

    def settings(self) -> dict:
        self.ea_model.drafter = self.drafter
        return super().settings()


def run(args: argparse.Namespace) -> int:
    from jakiro.base_models import load_base_model
    from jakiro.evaluation.answering import answer_interleaved
    from jakiro.evaluation.contenders import Contender
    from jakiro.evaluation.engines import PlainEngine
    from jakiro.evaluation.environment import run_meta
    from jakiro.evaluation.files import write_json_atomic, write_text_atomic
    from jakiro.evaluation.questions import load_questions
    from jakiro.evaluation.report import build_report
    from jakiro.heads import resolve_head_path
    from jakiro.model.ea_model import EaModel, stop_token_ids

    plan = check_generation_args(args)
    thresholds = parse_list(args.thresholds, float, check_threshold, "thresholds")
    steps = parse_list(args.steps, int, check_steps, "steps")
    levels = parse_list(args.tree_levels, int, _check_levels, "tree-levels")
    adapters = parse_adapters(args.adapter)
    for path in adapters.values():
        resolve_head_path(path)  # a missing adapter fails before the base model loads
    label, questions = load_questions(args.bench_name, args.question_begin, args.question_end,
                                      args.per_category)
    base, tokenizer = load_base_model(args.base_model_path, torch_dtype=args.dtype,
                                      device_map=device_map_for(args.device))
    engines = {REFERENCE: PlainEngine(base, stop_token_ids(base))}
    for name, path in adapters.items():
        ea = EaModel.from_base_and_head(base, tokenizer, path, expect_method="kangaroo", role=f"--adapter {name}")
        for threshold, step, level in itertools.product(thresholds, steps, levels):
            setting = Setting(name, threshold, step, level)
            engines[setting.name] = SettingEngine(ea, setting)
    out = Path(args.output_dir)
    files = {name: out / "answers" / f"{name}.jsonl" for name in engines}
    common = {**sampling_settings(args), "dtype": dtype_name(base.dtype), "base_model": str(args.base_model_path),
              "bench": label}
    metas = {}
    for name, engine in engines.items():
        head = adapters[engine.setting.adapter] if isinstance(engine, SettingEngine) else None
        metas[name] = run_meta("kangaroo.sweep", engine.device, {**common, **engine.settings()}, model_id=name,
                               head=head)
    # interleaved: every setting on a question, in order; drafting totals cover the timed questions only
    answer_interleaved(engines, files, metas, questions, tokenizer, plan, args.warmup, not args.no_progress, "sweep")

    contenders = [Contender(name, name, lambda w: None) for name in engines]
    meta = run_meta("kangaroo.sweep", engines[REFERENCE].device, common,
                    base_model_name=model_name(args.base_model_path),
                    bench=label, adapters=adapters, total_token=None, depth=None, top_k_tree=None)  # no EAGLE tree
    report = build_report(contenders, files, [q.question_id for q in questions], REFERENCE, meta,
                          greedy=plan.sampling.greedy, cycle_reference=REFERENCE)
    plain_step = next(m for m in report["methods"] if m["name"] == REFERENCE)["overall"].get("cycle_time")
    rows = []
    for method in report["methods"]:
        engine = engines[method["name"]]
        if not isinstance(engine, SettingEngine):
            continue
        totals, setting = engine.totals, engine.setting
        drafted = totals["drafted"] / totals["rounds"] if totals["rounds"] else None
        per_draft = totals["draft_time"] / totals["drafted"] if totals["drafted"] else None
        rows.append({**method["overall"], "name": method["name"], "adapter": setting.adapter,
                     "exit_layer": engine.drafter.exit_layer, "threshold": setting.threshold, "steps": setting.steps,
                     "tree_levels": setting.tree_levels, "drafted_per_round": drafted,
                     "nodes_per_round": totals["nodes"] / totals["rounds"] if totals["rounds"] else None,
                     "draft_cost_per_drafted_token": per_draft / plain_step if per_draft and plain_step else None,
                     "timed_rounds": totals["rounds"]})
    rows.sort(key=lambda r: -(r.get("speedup") or 0.0))
    summary = {"kind": "kangaroo-sweep", "meta": meta, "reference": REFERENCE,
               "plain_step_seconds": plain_step, "settings": rows, "report": {k: v for k, v in report.items()
                                                                              if k != "markdown"}}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", summary)
    text = render(rows, meta)
    write_text_atomic(out / "sweep.md", text)
    print(text)
    print(f"written {out / 'sweep.json'} and {out / 'sweep.md'}", file=sys.stderr)
    return 0


def render(rows: list[dict], meta: dict) -> str:
    from jakiro.evaluation.tables import fmt, markdown_table

    headers = ["setting", "exit layer", "threshold", "steps", "tree", "tokens/s", "speedup vs plain", "tau",
               "drafted/round", "draft cost/drafted token", "cycle cost", "same text as plain"]
    table = markdown_table(headers, [[r["name"], fmt(r["exit_layer"]), fmt(r["threshold"]), fmt(r["steps"]),
                                      fmt(r["tree_levels"]), fmt(r["tokens_per_second"]), fmt(r.get("speedup")),
                                      fmt(r["tau"]), fmt(r["drafted_per_round"]),
                                      fmt(r["draft_cost_per_drafted_token"]), fmt(r.get("cycle_cost")),
                                      fmt(r.get("greedy_agreement"))] for r in rows])
    settings = meta["settings"]
    return (f"# Kangaroo settings on {meta['base_model_name']} ({meta['bench']})\n\n"
            f"- device {meta['device']} ({meta['device_name']}), threads {meta['threads']}, dtype {settings['dtype']}; "
            f"temperature {settings['temperature']}, max new tokens {settings['max_new_token']}\n"
            "- costs in plain decode steps of the same process; best speedup first\n\n" + table)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
