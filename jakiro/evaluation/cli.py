"""Arguments, loading and error handling shared by the evaluation commands.

Every command takes the same names for the same things, and turns a `JakiroError` into one line
``error: ...`` on stderr with exit code 2 (no traceback): bad input is the user's to fix, not a crash.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..commands import run_main  # noqa: F401  (re-exported: every evaluation command uses it)
from ..errors import ConfigError
from ..model.sampling import SamplingConfig
from .answering import GenerationPlan


def add_question_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("questions")
    group.add_argument("--bench-name", default="mt_bench",
                       help="mt_bench, spec_bench, or a path to a question.jsonl in the MT-bench format")
    group.add_argument("--question-begin", type=int, default=None, help="first question (position, inclusive)")
    group.add_argument("--question-end", type=int, default=None, help="last question (position, exclusive)")
    group.add_argument("--per-category", type=int, default=None, metavar="N",
                       help="then keep the first N questions of each category (a quick sample of every category)")


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    group.add_argument("--top-p", type=float, default=0.0, help="nucleus sampling; 0 or 1 = off")
    group.add_argument("--top-k", type=int, default=0, help="top-k sampling; 0 = off")
    group.add_argument("--max-new-token", type=int, default=512,
                       help="new tokens per turn at most (the same for every method and baseline)")
    group.add_argument("--seed", type=int, default=0, help="every question is seeded with this value")


def add_tree_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    group = parser.add_argument_group("draft tree" + note)
    group.add_argument("--total-token", type=int, default=60,
                       help="tree budget, root included; -1 = the budget (and depth, up to --depth) maximising "
                            "the head's tau per round cost timed on this device")
    group.add_argument("--depth", type=int, default=5,
                       help="draft depth (with --total-token -1: the deepest tree considered)")
    group.add_argument("--top-k-tree", type=int, default=10, help="children expanded per tree node")


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--dtype", default="auto",
                       help="float32, float16 or bfloat16; auto = float32 on CPU, bfloat16 on GPU")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (GPU when there is one)")
    group.add_argument("--warmup", type=int, default=1, help="untimed passes over the first question (default 1)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--answer-file", default=None,
                       help="answer JSONL (default answers/BENCH/MODEL_ID.jsonl); existing answers are kept and skipped")
    group.add_argument("--model-id", default=None, help="name recorded in the answers (default from method and model)")


def device_map_for(device: str) -> str | None:
    """The ``device_map`` for `load_base_model` (None = its own choice), with a clear error for bad names."""
    if device in (None, "auto"):
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    return device


def check_generation_args(args: argparse.Namespace) -> GenerationPlan:
    """Validate the shared generation settings early, before any model is loaded."""
    if args.max_new_token < 1:
        raise ConfigError(f"--max-new-token must be >= 1, got {args.max_new_token}")
    if getattr(args, "warmup", 0) < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    if hasattr(args, "dtype"):
        from ..base_models import parse_dtype

        parse_dtype(args.dtype)  # an unknown dtype fails here, before any model is loaded or converted
    return GenerationPlan(SamplingConfig(args.temperature, args.top_p, args.top_k), args.max_new_token, args.seed)


def check_tree_args(args: argparse.Namespace) -> None:
    if args.total_token != -1 and args.total_token < 2:
        raise ConfigError(f"--total-token must be >= 2 (root included) or -1 for auto, got {args.total_token}")
    if args.depth < 1:
        raise ConfigError(f"--depth must be >= 1, got {args.depth}")
    if args.top_k_tree < 1:
        raise ConfigError(f"--top-k-tree must be >= 1, got {args.top_k_tree}")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def model_name(path: str) -> str:
    """A short name for a model path or alias (its last folder name)."""
    return Path(str(path).rstrip("/\\")).name or str(path)


def default_model_id(method: str, base_model_path: str, temperature: float) -> str:
    """``METHOD-MODEL-temperature-T``, the naming of the original answer files."""
    return f"{method}-{model_name(base_model_path)}-temperature-{float(temperature)}"


def default_answer_file(bench_label: str, model_id: str) -> Path:
    return Path("answers") / bench_label / f"{model_id}.jsonl"


def sampling_settings(args: argparse.Namespace) -> dict:
    return {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "max_new_token": args.max_new_token, "seed": args.seed}
