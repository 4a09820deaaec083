"""Answer a question set with speculative decoding (Jakiro or an EAGLE-2 head); one JSONL line per question.

    python -m jakiro.evaluation.gen_ea_answer --base-model-path smollm2-135m-instruct \\
        --ea-model-path jakiro-smollm2-135m-instruct --bench-name mt_bench --temperature 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..base_models import DEFAULT_BASE_MODEL
from .answering import run_answer_command
from .cli import (add_output_args, add_question_args, add_runtime_args, add_sampling_args, add_tree_args,
                  check_generation_args, check_tree_args, default_answer_file, default_model_id, device_map_for,
                  dtype_name, sampling_settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.gen_ea_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--ea-model-path", required=True, help="draft head folder or shipped head alias")
    add_question_args(parser)
    add_sampling_args(parser)
    add_tree_args(parser)
    add_runtime_args(parser)
    add_output_args(parser)
    return parser


def head_hash(head_path: Path) -> str:
    from ..files import file_sha256

    weights = head_path / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else ""


def run(args: argparse.Namespace, drafter_options: dict | None = None, expect_method: str | None = None,
        model_id: str | None = None) -> int:
    """Answer with the head's own method; a method package's wrapper (e.g. `kangaroo.evaluation.gen_ea_answer`)
    passes its drafter options, the method it expects and a default model id naming its settings."""
    from ..heads import resolve_head_path
    from ..methods import check_method, head_method
    from ..model.ea_model import EaModel
    from .answering import answer_and_report, recorded_budget
    from .engines import SpeculativeEngine
    from .environment import run_meta
    from .profile import fast_kernel_info
    from .questions import load_questions

    plan = check_generation_args(args)
    check_tree_args(args)
    label, questions = load_questions(args.bench_name, args.question_begin, args.question_end,
                                      args.per_category)
    device_map = device_map_for(args.device)
    head_path = resolve_head_path(args.ea_model_path)
    method = head_method(head_path)
    check_method(method, expect_method, args.ea_model_path, role=f"{expect_method} evaluation")
    model_id = args.model_id or model_id or default_model_id(method, args.base_model_path, args.temperature)
    answer_file = Path(args.answer_file) if args.answer_file else default_answer_file(label, model_id)
    total_token, budget_timings, depth = args.total_token, {}, args.depth
    if args.total_token == -1 and (recorded := recorded_budget(answer_file)):
        total_token, budget_timings = recorded[:2]  # resuming: keep the budget and depth the file was started with
        depth = recorded[2] or depth
    ea = EaModel.from_pretrained(args.base_model_path, head_path, total_token=total_token, depth=depth,
                                 top_k=args.top_k_tree, torch_dtype=args.dtype, device_map=device_map,
                                 **(drafter_options or {}))
    budget_timings = budget_timings or {str(k): v for k, v in ea.budget_timings.items()}
    engine = SpeculativeEngine(ea)
    settings = {**sampling_settings(args), **engine.settings(), "total_token_requested": args.total_token,
                "dtype": dtype_name(ea.base_model.dtype), "base_model": str(args.base_model_path),
                "head_sha256": head_hash(head_path), "bench": label}
    meta = run_meta("gen_ea_answer", engine.device, settings, model_id=model_id, head=str(args.ea_model_path),
                    head_method=engine.name, budget_timings=budget_timings, **fast_kernel_info(ea.base_model))
    return answer_and_report(engine, ea.tokenizer, questions, answer_file, model_id, meta, plan, args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
