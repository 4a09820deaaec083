"""Answer a question set with a Jakiro* head (speculative decoding); one JSONL line per question.

The same command as `jakiro.evaluation.gen_ea_answer` (same arguments, answer format, resume and
report), plus ``--tree``: ``static`` (default) drafts on the original's 26-node EAGLE-1 tree, cut to
``--total-token`` nodes; ``dynamic`` grows EAGLE-2's dynamic tree (``--total-token``, ``--depth``,
``--top-k-tree``). A head of another method is refused with one line.

    python -m jakiro_star.evaluation.gen_ea_answer --base-model-path smollm2-135m-instruct \\
        --ea-model-path jakiro-star-smollm2-135m-instruct --bench-name mt_bench --temperature 0 --tree static
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jakiro.evaluation import gen_ea_answer as core
from jakiro.evaluation.answering import run_answer_command
from jakiro.evaluation.cli import default_model_id

from ..model.drafter import TREES

PROG = "python -m jakiro_star.evaluation.gen_ea_answer"


def build_parser() -> argparse.ArgumentParser:
    parser = core.build_parser()
    parser.prog, parser.description = PROG, __doc__
    parser.add_argument("--tree", choices=TREES, default="static",
                        help="static: the original 26-node tree (default); dynamic: EAGLE-2's dynamic tree")
    return parser


def model_label(tree: str) -> str:
    """The method name in default model ids: ``jakiro_star`` (static tree) or ``jakiro_star-dynamic``."""
    return "jakiro_star" if tree == "static" else f"jakiro_star-{tree}"


def run(args: argparse.Namespace) -> int:
    model_id = default_model_id(model_label(args.tree), args.base_model_path, args.temperature)
    return core.run(args, drafter_options={"tree": args.tree}, expect_method="jakiro_star", model_id=model_id)


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
