"""Side-by-side benchmark: several contenders on the same questions in one process, interleaved per question.

For every question the contenders run one after the other (A B C, A B C, ...), so slow drift of the
machine (clocks, other load) hits all of them alike. Writes per-contender answer files, a JSON
report, a Markdown table (tokens/s, speedup vs the reference, τ, cycle cost relative to one plain
decode step) and figures.

    python -m jakiro.evaluation.compare --base-model-path smollm2-135m-instruct \\
        --ea-model-path jakiro-smollm2-135m-instruct --eagle-model-path eagle2-smollm2-135m-instruct \\
        --bench-name mt_bench --total-token -1 --output-dir results/compare
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..base_models import DEFAULT_BASE_MODEL
from ..errors import ConfigError
from .cli import (add_question_args, add_runtime_args, add_sampling_args, add_tree_args, check_generation_args,
                  check_tree_args, device_map_for, dtype_name, model_name, sampling_settings)
from .contenders import CONTENDERS

CYCLE_REFERENCE = "naive"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--ea-model-path", default=None, help="Jakiro draft head (folder or alias): contender jakiro")
    parser.add_argument("--eagle-model-path", default=None,
                        help="EAGLE-2 baseline head (folder or alias): contender eagle2")
    parser.add_argument("--star-model-path", default=None,
                        help="Jakiro* head (folder or alias): contenders jakiro-star (static tree) and jakiro-star-dynamic")
    parser.add_argument("--head", action="append", default=[], metavar="NAME=PATH",
                        help="draft head of any contender that needs one (repeatable)")
    parser.add_argument("--contenders", default=None,
                        help=f"comma-separated, run in this order; from {', '.join(CONTENDERS)} "
                             "(default: all that need no head or have one given)")
    parser.add_argument("--reference", default=None,
                        help="contender the speedups are relative to (default hf, else the first)")
    add_question_args(parser)
    add_sampling_args(parser)
    add_tree_args(parser)
    add_runtime_args(parser)
    parser.add_argument("--output-dir", default="compare_results",
                        help="folder for answers/, compare.json, compare.md and figs/ (default compare_results/)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    return parser


def parse_heads(args: argparse.Namespace) -> dict[str, str]:
    heads = {}
    for item in args.head:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--head {item!r}: write NAME=PATH, e.g. --head jakiro=heads/jakiro")
        heads[name.strip()] = path.strip()
    if args.ea_model_path:
        heads["jakiro"] = args.ea_model_path
    if args.eagle_model_path:
        heads["eagle2"] = args.eagle_model_path
    if args.star_model_path:
        heads["jakiro-star"] = args.star_model_path
    return heads


def drafter_statistics(engines: dict) -> dict:
    """What each speculative contender's drafter counted while answering in this process (e.g. how often
    Jakiro*'s tree levels mixed both experts), keyed by contender; drafters that count nothing are left out."""
    from .engines import SpeculativeEngine

    return {name: stats for name, engine in engines.items()
            if isinstance(engine, SpeculativeEngine) and (stats := engine.ea_model.drafter.statistics())}


def choose_reference(requested: str | None, names: list[str]) -> str:
    if requested is None:
        return "hf" if "hf" in names else names[0]
    if requested not in names:
        raise ConfigError(f"--reference {requested!r} is not among the contenders ({', '.join(names)})")
    return requested


def resolve_budget(base, total_token: int, tokenizer=None, head: str | None = None, depth: int = 5,
                   top_k: int = 10) -> tuple[int, dict, dict | None, int]:
    """The tree budget: as given, or (``-1``) chosen once and shared by all contenders: with ``head`` (the
    first contender's draft head) the budget maximising its τ per round cost on this device, else the
    prior τ curve against this device's costs. Returns the budget, the seconds per candidate forward, the
    full choice record (None without a head) and the depth (with a head, chosen with the budget, at most
    ``depth``)."""
    if total_token != -1:
        return total_token, {}, None, depth
    if head is None:
        from ..model.budget import choose_total_token

        chosen, timings = choose_total_token(base)
        return chosen, {str(k): v for k, v in timings.items()}, None, depth
    from ..model.ea_model import EaModel

    choice = EaModel.from_base_and_head(base, tokenizer, head, total_token=-1, depth=depth, top_k=top_k).budget_choice
    return (choice.total_token, {str(k): v for k, v in choice.timings.items()}, {"head": head, **choice.as_dict()},
            choice.depth or depth)


def run(args: argparse.Namespace) -> int:
    from ..base_models import load_base_model
    from ..heads import resolve_head_path
    from ..model.ea_model import stop_token_ids
    from .answering import INTERRUPTED, answer_interleaved, answered_ids, recorded_budget
    from .contenders import Workbench, select_contenders
    from .engines import SpeculativeEngine
    from .environment import run_meta
    from .profile import fast_kernel_info
    from .questions import load_questions
    from .report import build_report, write_outputs

    plan = check_generation_args(args)
    check_tree_args(args)
    heads = parse_heads(args)
    contenders = select_contenders(args.contenders, heads)
    reference = choose_reference(args.reference, [c.name for c in contenders])
    for contender in contenders:  # fail on a missing head before the base model is loaded
        if contender.needs_head:
            resolve_head_path(heads[contender.head_name])
    label, questions = load_questions(args.bench_name, args.question_begin, args.question_end,
                                      args.per_category)
    base, tokenizer = load_base_model(args.base_model_path, torch_dtype=args.dtype,
                                      device_map=device_map_for(args.device))
    out = Path(args.output_dir)
    files = {c.name: out / "answers" / f"{c.name}.jsonl" for c in contenders}
    recorded = next((r for r in map(recorded_budget, files.values()) if r), None) if args.total_token == -1 else None
    budget_choice, depth = None, args.depth
    if recorded:  # resuming keeps the budget and depth
        total_token, budget_timings, depth = recorded[0], recorded[1], recorded[2] or args.depth
    else:
        budget_head = next((heads[c.head_name] for c in contenders if c.needs_head), None)
        total_token, budget_timings, budget_choice, depth = resolve_budget(base, args.total_token, tokenizer,
                                                                           budget_head, args.depth, args.top_k_tree)
    bench = Workbench(base, tokenizer, stop_token_ids(base), total_token, depth, args.top_k_tree, heads)
    engines = {c.name: c.build(bench) for c in contenders}
    common = {**sampling_settings(args), "dtype": dtype_name(base.dtype), "base_model": str(args.base_model_path),
              "bench": label, "total_token_requested": args.total_token}
    metas = {}
    for name, engine in engines.items():
        settings = {**common, **engine.settings()}
        extra = {"head": heads.get(CONTENDERS[name].head_name), "budget_timings": budget_timings,
                 "budget_choice": budget_choice, **fast_kernel_info(base)} if isinstance(engine, SpeculativeEngine) else {}
        metas[name] = run_meta("compare", engine.device, settings, model_id=name, **extra)
    # interleaved: every contender on a question, in order; drafter statistics cover the timed answers only
    try:
        answer_interleaved(engines, files, metas, questions, tokenizer, plan, args.warmup, not args.no_progress,
                           "compare")
    except KeyboardInterrupt:
        wanted = {q.question_id for q in questions}
        saved = min(len(answered_ids(path) & wanted) for path in files.values())
        print(f"\ninterrupted: {saved} of {len(questions)} questions are answered by every contender in "
              f"{out / 'answers'}; rerun the same command to answer the rest and write the report", file=sys.stderr)
        return INTERRUPTED

    run_info = run_meta("compare", next(iter(engines.values())).device, common,
                        base_model_name=model_name(args.base_model_path), bench=label,
                        total_token=total_token, budget_timings=budget_timings, budget_choice=budget_choice,
                        depth=depth, depth_requested=args.depth,
                        top_k_tree=args.top_k_tree, heads=heads, drafter_statistics=drafter_statistics(engines),
                        **fast_kernel_info(base))
    report = build_report(contenders, files, [q.question_id for q in questions], reference, run_info,
                          greedy=plan.sampling.greedy, cycle_reference=CYCLE_REFERENCE)
    written = write_outputs(report, out, figures=not args.no_figures)
    print(report["markdown"])
    print("written " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .answering import run_answer_command

    return run_answer_command(build_parser(), run, argv)  # Ctrl-C before answering: one line, too


if __name__ == "__main__":
    sys.exit(main())
