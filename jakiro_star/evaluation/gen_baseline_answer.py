"""Answer a question set without speculation, as the speed baseline of Jakiro* runs.

Exactly `jakiro.evaluation.gen_baseline_answer` (same engines, arguments and answer format), so
Jakiro* is measured against the same baseline as Jakiro and EAGLE-2.

    python -m jakiro_star.evaluation.gen_baseline_answer --base-model-path smollm2-135m-instruct \\
        --bench-name mt_bench --temperature 0 --baseline-engine naive
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jakiro.evaluation import gen_baseline_answer as core
from jakiro.evaluation.answering import run_answer_command

PROG = "python -m jakiro_star.evaluation.gen_baseline_answer"


def build_parser() -> argparse.ArgumentParser:
    parser = core.build_parser()
    parser.prog = PROG
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_answer_command(build_parser(), core.run, argv)


if __name__ == "__main__":
    sys.exit(main())
