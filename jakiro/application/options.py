"""Command-line options shared by the web UI and the terminal chat, and loading the model they name."""

from __future__ import annotations

import argparse

from ..base_models import DEFAULT_BASE_MODEL, load_base_model
from ..errors import CheckpointError, ConfigError, JakiroError
from ..heads import resolve_head_path
from .streaming import Sampling

DEFAULT_HEAD = "jakiro-smollm2-135m-instruct"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Base model, draft head, tree shape and dtype."""
    group = parser.add_argument_group("model")
    group.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL,
                       help=f"Hugging Face model folder or alias (default: {DEFAULT_BASE_MODEL})")
    group.add_argument("--ea-model-path", default=DEFAULT_HEAD,
                       help=f"draft head folder (any method) or shipped head alias (default: {DEFAULT_HEAD})")
    group.add_argument("--random-head", action="store_true",
                       help="use a randomly initialised draft head instead (for tests, or when no head is installed)")
    group.add_argument("--total-token", type=int, default=60,
                       help="draft tree size including the root; -1 picks it, and the depth (up to --depth), from "
                            "the head's acceptance and this device's timings (default: 60)")
    group.add_argument("--depth", type=int, default=5,
                       help="draft tree depth; with --total-token -1 the deepest tree considered (default: 5)")
    group.add_argument("--top-k-tree", type=int, default=10, help="children expanded per draft node (default: 10)")
    group.add_argument("--dtype", default="auto",
                       help="float32, float16 or bfloat16 (default: auto = float32 on CPU, bfloat16 on GPU)")


def add_sampling_arguments(parser: argparse.ArgumentParser, temperature: float = 0.0, top_p: float = 0.0) -> None:
    """Sampling settings and the answer length."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=temperature,
                       help=f"sampling temperature, 0 = greedy (default: {temperature})")
    group.add_argument("--top-p", type=float, default=top_p, help=f"nucleus sampling, 0 = off (default: {top_p})")
    group.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens, 0 = off (default: 0)")
    group.add_argument("--max-new-token", type=int, default=512, help="most new tokens per answer (default: 512)")


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    return Sampling(args.temperature, args.top_p, args.top_k, args.max_new_token)


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad sampling, tree and dtype options in one line before the (slow) model load, the same way in
    the terminal chat and the web UI."""
    import math

    from ..base_models import parse_dtype
    from ..evaluation.cli import check_tree_args

    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise ConfigError(f"--temperature must be a number >= 0 (0 = greedy), got {args.temperature}")
    if not 0.0 <= args.top_p <= 1.0:  # also refuses nan
        raise ConfigError(f"--top-p must be between 0 and 1 (0 or 1 = off), got {args.top_p}")
    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0 (0 = off), got {args.top_k}")
    if args.max_new_token < 1:
        raise ConfigError(f"--max-new-token must be >= 1, got {args.max_new_token}")
    check_tree_args(args)  # the answer commands' own check: one wording everywhere
    if args.dtype != "auto":
        parse_dtype(args.dtype)


def check_head(args: argparse.Namespace) -> None:
    """Fail fast (before the slow base-model load) when the draft head is missing."""
    if args.random_head:
        return
    try:
        resolve_head_path(args.ea_model_path)
    except CheckpointError as error:
        raise CheckpointError(f"{error} (or pass --random-head to try the interface with an untrained head)") from None


def quiet_loading() -> None:
    """No per-file progress bars from `transformers` in the commands' output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_model(args: argparse.Namespace, seed: int = 0):
    """The `EaModel` the arguments describe (raises `JakiroError` with a one-line message)."""
    from ..model.ea_model import EaModel

    check_head(args)
    dtype = None if args.dtype == "auto" else args.dtype
    if args.random_head:
        base, tokenizer = load_base_model(args.base_model_path, torch_dtype=dtype)
        return EaModel.from_base_model(base, tokenizer, total_token=args.total_token, depth=args.depth,
                                       top_k=args.top_k_tree, seed=seed)
    return EaModel.from_pretrained(args.base_model_path, args.ea_model_path, total_token=args.total_token,
                                   depth=args.depth, top_k=args.top_k_tree, torch_dtype=dtype)


def head_label(args: argparse.Namespace) -> str:
    return "random (untrained) head" if args.random_head else str(args.ea_model_path)


__all__ = ["DEFAULT_HEAD", "JakiroError", "add_model_arguments", "add_sampling_arguments", "check_head",
           "check_options", "head_label", "load_model", "quiet_loading", "sampling_from_args"]
