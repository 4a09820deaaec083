"""The speed baseline for Kangaroo runs: `jakiro.evaluation.gen_baseline_answer` with the Kangaroo options
accepted (and ignored), so both answer commands take the same arguments.

    python -m kangaroo.evaluation.gen_baseline_answer --base-model-path smollm2-135m-instruct \\
        --bench-name spec_bench --temperature 0 --baseline-engine naive
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jakiro.evaluation import gen_baseline_answer
from jakiro.evaluation.answering import run_answer_command

from .options import add_kangaroo_args


def build_parser() -> argparse.ArgumentParser:
    parser = gen_baseline_answer.build_parser()
    parser.prog = "python -m kangaroo.evaluation.gen_baseline_answer"
    parser.description = __doc__
    add_kangaroo_args(parser, " (ignored by the baseline; accepted for symmetry)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), gen_baseline_answer.run, argv)


if __name__ == "__main__":
    sys.exit(main())
