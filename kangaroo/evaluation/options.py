"""The Kangaroo drafting options of the evaluation commands (one definition for every command)."""

from __future__ import annotations

import argparse

from jakiro.errors import ConfigError

from ..model.config import check_steps, check_threshold


def add_kangaroo_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    group = parser.add_argument_group("Kangaroo drafting" + note)
    group.add_argument("--threshold", type=float, default=None,
                       help="stop drafting after a token whose top probability is below this (default: the adapter's)")
    group.add_argument("--steps", type=int, default=None,
                       help="draft at most this many tokens per round (default: the adapter's)")
    group.add_argument("--exit-layer", type=int, default=None,
                       help="decoder layers the draft runs (default: the one the adapter was trained on; another "
                            "value stays lossless but drafts with features the adapter never saw)")
    group.add_argument("--tree-levels", type=int, default=0,
                       help="also verify the runner-up tokens at the first N drafted positions (0 = a chain)")
    group.add_argument("--tree-width", type=int, default=2, help="candidates kept at those positions (default 2)")


def kangaroo_options(args: argparse.Namespace) -> dict:
    """The drafter options given on the command line (None = the adapter's saved default), checked early."""
    if args.threshold is not None:
        check_threshold(args.threshold)
    if args.steps is not None:
        check_steps(args.steps)
    if args.exit_layer is not None and args.exit_layer < 1:
        raise ConfigError(f"--exit-layer must be >= 1, got {args.exit_layer}")
    if args.tree_levels < 0 or args.tree_width < 1:
        raise ConfigError("--tree-levels must be >= 0 and --tree-width >= 1")
    options = {"threshold": args.threshold, "steps": args.steps, "exit_layer": args.exit_layer,
               "tree_levels": args.tree_levels, "tree_width": args.tree_width}
    return {k: v for k, v in options.items() if v is not None}


def settings_model_id(config, options: dict, base_model_path: str, temperature: float) -> str:
    """``kangaroo-l2-t0.6-s6[-tree2x2]-MODEL-temperature-T``: answer files of different settings never mix."""
    from jakiro.evaluation.cli import model_name

    exit_layer = options.get("exit_layer", config.exit_layer)
    threshold = options.get("threshold", config.threshold)
    steps = options.get("steps", config.steps)
    name = f"kangaroo-l{exit_layer}-t{threshold:g}-s{steps}"
    if options.get("tree_levels"):
        name += f"-tree{options['tree_levels']}x{options.get('tree_width', 2)}"
    return f"{name}-{model_name(base_model_path)}-temperature-{float(temperature)}"
