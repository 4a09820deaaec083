"""Answer a question set with Kangaroo; one JSONL line per question (`jakiro.evaluation.gen_ea_answer` underneath).

    python -m kangaroo.evaluation.gen_ea_answer --base-model-path smollm2-135m-instruct \\
        --ea-model-path kangaroo-smollm2-135m-instruct --bench-name spec_bench --threshold 0.6 --steps 6

Answers go to answers/BENCH/kangaroo-l{exit}-t{threshold}-s{steps}-MODEL-temperature-T.jsonl unless
--answer-file/--model-id say otherwise; `python -m jakiro.evaluation.speed FILE --baseline BASELINE`
reports them per category (Spec-Bench: its MT-bench part as one task, then translation, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jakiro.base_models import DEFAULT_BASE_MODEL
from jakiro.evaluation.answering import run_answer_command
from jakiro.evaluation.cli import add_output_args, add_question_args, add_runtime_args, add_sampling_args

from .options import add_kangaroo_args, kangaroo_options, settings_model_id


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kangaroo.evaluation.gen_ea_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--ea-model-path", required=True, help="Kangaroo adapter folder or shipped alias")
    add_question_args(parser)
    add_sampling_args(parser)
    add_kangaroo_args(parser)
    add_runtime_args(parser)
    add_output_args(parser)
    # the shared answer code reads the tree settings; Kangaroo's tree is set by the options above
    parser.set_defaults(total_token=60, depth=5, top_k_tree=10)
    return parser


def run(args: argparse.Namespace) -> int:
    from jakiro.evaluation import gen_ea_answer
    from jakiro.heads import resolve_head_path
    from jakiro.methods import check_method, head_method

    from ..model.config import KangarooConfig

    options = kangaroo_options(args)
    head = resolve_head_path(args.ea_model_path)
    check_method(head_method(head), "kangaroo", args.ea_model_path, role="kangaroo.evaluation")
    model_id = settings_model_id(KangarooConfig.load(head), options, args.base_model_path, args.temperature)
    return gen_ea_answer.run(args, drafter_options=options, expect_method="kangaroo", model_id=model_id)


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
