"""Widen a trained head's experts without changing what it drafts: `python -m jakiro.train.widen --help`.

The Jakiro and EAGLE-2 heads' experts are SwiGLU blocks ``down(silu(gate x) * up x)``. The widened head gets
new hidden units with small random ``gate`` and ``up`` rows and zero ``down`` columns: the new units add
nothing to the output, so the widened head drafts exactly what the trained one does, and fine-tuning it
(``jakiro.train.main --init-head``, with a config whose ``expert_intermediate_size`` is the new width) grows
them from there (function-preserving growth, as in Net2Net). A capacity experiment can then start from a
trained head instead of from scratch, which on a CPU costs several sessions of training.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ..commands import exit_on_error
from ..errors import ConfigError
from ..heads import resolve_head_path, stored_float_dtype
from ..methods import load_head, new_head
from ..model.moe import SwiGLU

RANDOM_ROWS = ("gate_proj", "up_proj")   # new hidden units: small random input weights
ZERO_COLUMNS = ("down_proj",)            # ... and zero output weights, so the output is unchanged


def widen_head(head: torch.nn.Module, intermediate_size: int, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """A copy of ``head`` whose experts have ``intermediate_size`` hidden units (at least the current width)."""
    if not any(isinstance(module, SwiGLU) for module in head.modules()):
        raise ConfigError(f"a {head.config.method} head has no SwiGLU experts to widen: widen a Jakiro or EAGLE-2 head")
    width = head.config.expert_intermediate_size
    if intermediate_size < width:
        raise ConfigError(f"--intermediate-size {intermediate_size} is narrower than the head's experts ({width}): "
                          "widening only adds hidden units")
    wide = new_head(dataclasses.replace(head.config, expert_intermediate_size=intermediate_size))
    generator = torch.Generator().manual_seed(seed)
    state, targets = {}, wide.state_dict()
    for name, value in head.state_dict().items():
        module = name.split(".")[-2] if "." in name else ""
        target = targets[name]
        if value.shape == target.shape:
            state[name] = value
        elif module in RANDOM_ROWS:
            extra = torch.randn(target.shape[0] - value.shape[0], value.shape[1], generator=generator) * std
            state[name] = torch.cat((value, extra.to(value.dtype)), 0)
        elif module in ZERO_COLUMNS:
            state[name] = torch.cat((value, value.new_zeros(value.shape[0], target.shape[1] - value.shape[1])), 1)
        else:
            raise ConfigError(f"cannot widen {name} {tuple(value.shape)} -> {tuple(target.shape)}: not an expert weight")
    wide.load_state_dict(state, strict=True)
    for name, shared in head.named_buffers():  # the base model's tensors a bound head shares (never saved)
        if name not in state:
            setattr(wide, name, shared)
    if getattr(head, "full_head_weight", None) is not None:
        wide.refresh_head()
    return wide


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.widen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", required=True, help="a Jakiro or EAGLE-2 head folder (RUN/head) or shipped alias")
    parser.add_argument("--intermediate-size", type=int, required=True,
                        help="hidden units per expert after widening (e.g. 1536, SmolLM2-135M's own MLP width)")
    parser.add_argument("--out", required=True, help="folder for the widened head (config.json, model.safetensors)")
    parser.add_argument("--std", type=float, default=0.02, help="init scale of the new units' input weights")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> Path:
    folder = resolve_head_path(args.head)
    head = load_head(folder)
    wide = widen_head(head, args.intermediate_size, args.std, args.seed)
    out = Path(args.out)
    wide.save_pretrained(out, dtype=stored_float_dtype(folder))  # a bf16 export stays bf16
    print(f"wrote {out}: {head.config.method} head, experts {head.config.expert_intermediate_size} -> "
          f"{args.intermediate_size} hidden units (train it with a config whose draft section has "
          f"\"expert_intermediate_size\": {args.intermediate_size}, and --init-head {out})")
    return out


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), run, argv)


if __name__ == "__main__":
    main()
