"""Train a Kangaroo adapter: `python -m kangaroo.train.main --help` (or `accelerate launch -m kangaroo.train.main`).

Reads data made by `jakiro.ge_data.allocation` with the exit layer's hidden states saved
(``--save-layers 2``), builds the adapter from a config JSON (``{"draft": {exit_layer, threshold, steps,
draft_vocab_size}, "train": {...}}``, the same layout and loader as `jakiro.train.main`), trains it
with AdamW and a warmup + cosine schedule on the soft cross-entropy against the base model's
next-token distribution, evaluates on the held-out split every epoch (expected acceptance, top-1,
replayed greedy τ), saves the full training state every epoch (``--resume`` continues after an
interruption with the same result), and exports the adapter folder that `EaModel.from_pretrained` loads.
The loop is the shared one (`jakiro.train.loop`, also `python -m jakiro.train.main --method kangaroo
--config ...`); what Kangaroo trains differently is `kangaroo.train.recipe`.

    python -m kangaroo.train.main --data data/smollm2-selfdistill \\
        --config kangaroo/train/configs/smollm2-135m.json --out runs/kangaroo
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jakiro.base_models import DEFAULT_BASE_MODEL
from jakiro.commands import exit_on_error
from jakiro.train.config import RunConfig, load_run_config
from jakiro.train.flags import add_job_flags, add_optimisation_flags, optimisation_overrides, training_job
from jakiro.train.loop import train_with_recipe

from ..model.config import DEFAULT_EXIT_LAYER
from .recipe import AdapterRecipe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kangaroo.train.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True,
                        help="data folder written by jakiro.ge_data.allocation --save-layers L")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--config", default=None,
                        help="JSON with 'draft' and 'train' sections (kangaroo/train/configs/)")
    parser.add_argument("--out", required=True, help="output folder: checkpoints/, metrics.jsonl, head/")
    parser.add_argument("--resume", action="store_true", help="continue from the last saved epoch in --out")
    parser.add_argument("--exit-layer", type=int, default=None,
                        help=f"decoder layers the draft runs before the adapter (default {DEFAULT_EXIT_LAYER}); "
                             "the data must hold that layer")
    parser.add_argument("--threshold", type=float, default=None,
                        help="drafting default saved with the adapter: stop when the top probability is below it")
    parser.add_argument("--steps", type=int, default=None,
                        help="drafting default saved with the adapter: max drafts per round")
    parser.add_argument("--draft-vocab-size", type=int, default=None, help="score only the N most frequent tokens")
    add_optimisation_flags(parser)
    add_job_flags(parser)
    return parser


def resolve_run(args: argparse.Namespace) -> RunConfig:
    overrides = {**optimisation_overrides(args), "exit_layer": args.exit_layer, "threshold": args.threshold,
                 "steps": args.steps, "draft_vocab_size": args.draft_vocab_size}
    return load_run_config(args.config, overrides)


def train(args: argparse.Namespace) -> Path:
    run = resolve_run(args)
    return train_with_recipe(run, AdapterRecipe(run), training_job(args))


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), train, argv)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
