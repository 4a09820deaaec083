"""Answer a question set without speculation, as the speed baseline; one JSONL line per question.

Engines: ``naive`` (this library's plain loop: the same cache and forward the method uses),
``hf`` (`transformers` generate) and ``hf-pld`` (generate with prompt lookup decoding). All use the
method's stop rule and ``--max-new-token``, and count generated token ids.

    python -m jakiro.evaluation.gen_baseline_answer --base-model-path smollm2-135m-instruct \\
        --bench-name mt_bench --temperature 0 --baseline-engine naive
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..base_models import DEFAULT_BASE_MODEL
from .answering import run_answer_command
from .cli import (add_output_args, add_question_args, add_runtime_args, add_sampling_args, add_tree_args,
                  check_generation_args, default_answer_file, default_model_id, device_map_for, dtype_name,
                  sampling_settings)
from .engines import BASELINE_ENGINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.gen_baseline_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--baseline-engine", default="naive", choices=BASELINE_ENGINES,
                        help="naive: our plain loop (default); hf: transformers generate; hf-pld: prompt lookup")
    parser.add_argument("--ea-model-path", default=None,
                        help="ignored: accepted so both answer commands take the same arguments")
    add_question_args(parser)
    add_sampling_args(parser)
    add_tree_args(parser, " (ignored by the baseline; accepted for symmetry)")
    add_runtime_args(parser)
    add_output_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..base_models import load_base_model
    from ..model.ea_model import stop_token_ids
    from .answering import answer_and_report
    from .engines import baseline_engine
    from .environment import run_meta
    from .questions import load_questions

    plan = check_generation_args(args)
    label, questions = load_questions(args.bench_name, args.question_begin, args.question_end,
                                      args.per_category)
    device_map = device_map_for(args.device)
    base, tokenizer = load_base_model(args.base_model_path, torch_dtype=args.dtype, device_map=device_map)
    engine = baseline_engine(args.baseline_engine, base, stop_token_ids(base))
    model_id = args.model_id or default_model_id(engine.name, args.base_model_path, args.temperature)
    answer_file = Path(args.answer_file) if args.answer_file else default_answer_file(label, model_id)
    settings = {**sampling_settings(args), **engine.settings(), "dtype": dtype_name(base.dtype),
                "base_model": str(args.base_model_path), "bench": label}
    meta = run_meta("gen_baseline_answer", engine.device, settings, model_id=model_id)
    return answer_and_report(engine, tokenizer, questions, answer_file, model_id, meta, plan, args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
