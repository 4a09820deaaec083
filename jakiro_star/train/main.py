"""Train a Jakiro* head: `python -m jakiro_star.train.main --help`.

The shared training pipeline (`jakiro.train.main`: data, loop, held-out metrics, checkpoints,
``--resume``, export) with ``--method jakiro_star``: the head is built and trained as its method's
registry entry says (`jakiro.methods`), with the Jakiro* loss (`jakiro_star.train.losses`: the
gated mixture and every expert alone). Example (the shipped head's settings):

    python -m jakiro_star.train.main --data data/smollm2 --config jakiro_star/train/configs/smollm2-135m.json \\
        --out runs/jakiro_star
"""

from __future__ import annotations

import argparse
import os

from jakiro.commands import exit_on_error
from jakiro.train import main as core

PROG = "python -m jakiro_star.train.main"


def build_parser() -> argparse.ArgumentParser:
    parser = core.build_parser()
    parser.prog, parser.description = PROG, __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(method="jakiro_star")
    return parser


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), core.train, argv)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
