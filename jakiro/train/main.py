"""Train a draft head: `accelerate launch -m jakiro.train.main --help` (or plain `python -m` on one device).

Reads data made by `jakiro.ge_data.allocation`, builds the head from a config JSON (Jakiro: 2
experts + contrastive branch; ``--num-experts 1 --no-contrastive``: the EAGLE-2 baseline head),
trains with AdamW and a warmup + cosine schedule, evaluates on a held-out split every epoch,
saves the full training state every epoch (``--resume`` continues from the last one), and exports
the head as a folder that `EaModel.from_pretrained` loads. ``--rollout-steps K`` adds the training-time
rollout (`jakiro.train.unroll`; K = 1 is the papers' recipe); after training, τ by tree size is measured
on held-out prompts with the real engine (`jakiro.train.measure_tau`) and appended to ``metrics.jsonl``.

This module parses the flags into a run configuration; the loop is `jakiro.train.loop`, and what a method
trains differently is its recipe from the method registry (``--method jakiro_star``; ``--method kangaroo``
with a Kangaroo ``--config`` trains the adapter `python -m kangaroo.train.main` does).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..base_models import DEFAULT_BASE_MODEL
from ..commands import exit_on_error
from ..errors import ConfigError
from ..methods import training_recipe
from .config import RunConfig, TrainConfig, load_run_config
from .flags import add_job_flags, add_optimisation_flags, optimisation_overrides, training_job
from .loop import TauSettings, train_with_recipe
from .measure_tau import DEFAULT_TREE_SIZES, parse_tree_sizes

# --method choices (EAGLE-2 heads: --num-experts 1 --no-contrastive; kangaroo: python -m kangaroo.train.main has
# its flags, here its options come from --config)
TRAINABLE_METHODS = ("jakiro", "jakiro_star", "kangaroo")
MAX_ROLLOUT_STEPS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.main", description="Train a Jakiro / EAGLE-2 draft head.")
    parser.add_argument("--data", required=True, help="data folder written by jakiro.ge_data.allocation")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--config", default=None, help="JSON with 'draft' and 'train' sections (jakiro/train/configs/)")
    parser.add_argument("--out", required=True, help="output folder: checkpoints/, metrics.jsonl, head/")
    parser.add_argument("--resume", action="store_true", help="continue from the last saved epoch in --out")
    add_optimisation_flags(parser)
    parser.add_argument("--num-experts", type=int, default=None)
    parser.add_argument("--method", choices=TRAINABLE_METHODS, default=None,
                        help="head method (default: the config's, else jakiro; an EAGLE-2 head is --num-experts 1 "
                             "--no-contrastive); --method jakiro_star is `python -m jakiro_star.train.main`, "
                             "--method kangaroo trains an adapter from a kangaroo/train/configs/ --config "
                             "(`python -m kangaroo.train.main` has its flags)")
    parser.add_argument("--no-contrastive", action="store_true", help="no contrastive branch (EAGLE-2 head with 1 expert)")
    parser.add_argument("--draft-vocab-size", type=int, default=None, help="predict only the N most frequent tokens")
    parser.add_argument("--rollout-steps", type=int, default=None, metavar="K",
                        help="training-time rollout: steps 2..K feed the head its own predicted features, with a loss "
                             "on every step (1, the default, is the papers' recipe; config field rollout_steps_train)")
    parser.add_argument("--rollout-decay", type=float, default=None, metavar="W",
                        help="loss weight of rollout step j is W**(j-1) (default 0.8; config field rollout_decay)")
    parser.add_argument("--answer-start-weight", type=float, default=None, metavar="W",
                        help="weigh an answer's first drafted token W times in the training loss, falling linearly "
                             "to 1 at --answer-start-tokens (default 1: every token alike, the papers' recipe; "
                             "config field answer_start_weight)")
    parser.add_argument("--contrastive-weight", type=float, default=None, metavar="C",
                        help="the contrastive (two-ahead) branch's share of the loss, in [0, 1] (default 0.5; config "
                             "field contrastive_weight; Jakiro heads only)")
    parser.add_argument("--answer-start-tokens", type=int, default=None, metavar="N",
                        help="answer index where that extra weight reaches 1 (default 64; answer_start_tokens)")
    parser.add_argument("--tau-prompts", type=int, default=4,
                        help="after training, measure τ by tree size on this many held-out prompts (0: skip)")
    parser.add_argument("--tau-max-new-tokens", type=int, default=32, help="new tokens per prompt for that measurement")
    parser.add_argument("--tau-tree-sizes", default=",".join(map(str, DEFAULT_TREE_SIZES)),
                        help="tree sizes (nodes, root included) for that measurement, comma-separated")
    add_job_flags(parser)
    return parser


def check_train_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train, before anything is written."""
    steps = cfg.rollout_steps_train
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_ROLLOUT_STEPS:
        raise ConfigError(f"rollout steps must be an integer in 1..{MAX_ROLLOUT_STEPS} (1 = the papers' recipe), "
                          f"got {steps!r}: fix --rollout-steps or rollout_steps_train")
    if not isinstance(cfg.rollout_decay, (int, float)) or not 0 < cfg.rollout_decay <= 1:
        raise ConfigError(f"rollout decay must be in (0, 1], got {cfg.rollout_decay!r}: fix --rollout-decay")
    if not isinstance(cfg.rollout_steps, int) or cfg.rollout_steps < 1:
        raise ConfigError(f"rollout_steps (held-out chain metric) must be >= 1, got {cfg.rollout_steps!r}")


def resolve_run(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: the config file with the flags on top (what ``run_config.json`` keeps)."""
    overrides = {**optimisation_overrides(args), "num_experts": args.num_experts,
                 "draft_vocab_size": args.draft_vocab_size, "rollout_steps_train": args.rollout_steps,
                 "rollout_decay": args.rollout_decay, "answer_start_weight": args.answer_start_weight,
                 "answer_start_tokens": args.answer_start_tokens, "contrastive_weight": args.contrastive_weight}
    if args.no_contrastive:
        overrides["contrastive"] = False
    if args.method is not None:
        overrides["method"] = args.method
    run = load_run_config(args.config, overrides)
    check_train_config(run.train)
    return run


def train(args: argparse.Namespace) -> Path:
    run = resolve_run(args)
    tau = TauSettings(args.tau_prompts, args.tau_max_new_tokens, parse_tree_sizes(args.tau_tree_sizes))
    if tau.prompts < 0 or tau.max_new_tokens < 1:
        raise ConfigError("--tau-prompts must be >= 0 and --tau-max-new-tokens >= 1")
    recipe = training_recipe(run.draft.get("method", "jakiro"), run)  # jakiro.train.recipe; Kangaroo's its own
    return train_with_recipe(run, recipe, training_job(args, tau))


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), train, argv)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
