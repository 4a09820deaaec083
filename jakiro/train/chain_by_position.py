"""Chain accuracy of a head by how far into the answer drafting starts: `python -m jakiro.train.chain_by_position --help`.

A head's held-out average hides where it fails. Self-distilled answers of a small model get easier the
longer they run (lists, repeated phrasing), so a τ measured on the first 32 answer tokens (MT-bench runs
at 32 new tokens, `jakiro.train.measure_tau`'s default) and one over whole answers can differ by a
factor of two. This command rolls the head out from every start position of the first held-out answers
(the chain metric of `jakiro.train.rollout`: steps 1..j all equal the base model's greedy token) and
groups the starts by the drafted token's index inside its turn's answer. Each group also reports how sure
the base model itself is of the tokens drafted there (its probability of its own greedy token): where that is
low, the next token is hard to guess for any head.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..base_models import DEFAULT_BASE_MODEL, load_base_model
from ..commands import exit_on_error
from ..errors import ConfigError
from ..files import write_json_atomic
from .losses import answer_index, rollout_outputs
from .measure_tau import POSITION_EDGES as DEFAULT_EDGES, bucket_label
from .rollout import _NoNoise, chain_matches

def parse_edges(text: str) -> tuple[int, ...]:
    """Bucket lower edges like "0,32,128" (the last bucket is open-ended)."""
    try:
        edges = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--buckets must be comma-separated integers like 0,32,128, got {text!r}") from None
    if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"--buckets must start at 0 and increase, like 0,32,128; got {text!r}")
    return edges


@torch.no_grad()
def chain_by_position(head: torch.nn.Module, samples: list[dict[str, torch.Tensor]], config, steps: int,
                      edges: tuple[int, ...]) -> list[dict]:
    """Per bucket: rollouts, chain accuracy per step and the simulated single-chain τ (1 + their sum)."""
    labels = [bucket_label(edge, edges) for edge in edges]
    matched = {label: torch.zeros(steps) for label in labels}
    tried = {label: 0 for label in labels}
    confidence = {label: 0.0 for label in labels}
    clean = _NoNoise(config)
    for sample in samples:
        mask = sample["loss_mask"]
        batch = {"hidden_state": sample["hidden_state"][None].float(), "input_ids": sample["input_ids"][None].long(),
                 "loss_mask": mask[None], "attention": torch.ones_like(mask[None])}
        outputs = rollout_outputs(head, batch, clean, steps, head.config.contrastive)
        index = answer_index(mask)
        # start s drafts the token at s + 2 from the feature at s + 1: group it by that token's answer index
        starts = [s for s in range(len(mask) - steps - 2) if mask[s + 1] > 0]
        groups: dict[str, list[int]] = {}
        for start in starts:
            groups.setdefault(bucket_label(int(index[start + 1]), edges), []).append(start)
        for bucket, members in groups.items():
            matched[bucket] += chain_matches(head, [mix for mix, _ in outputs], batch["hidden_state"][0],
                                             torch.tensor(members), steps)
            tried[bucket] += len(members)
            confidence[bucket] += float(base_confidence(head, batch["hidden_state"][0], members).sum())
    rows = []
    for label in labels:
        accuracy = (matched[label] / max(tried[label], 1)).tolist()
        rows.append({"answer_tokens": label, "rollouts": tried[label], "acc_per_step": accuracy,
                     "simulated_accept_length": 1.0 + sum(accuracy),
                     "base_top1_probability": confidence[label] / max(tried[label], 1)})
    return rows


def base_confidence(head: torch.nn.Module, features: torch.Tensor, starts: list[int]) -> torch.Tensor:
    """The base model's probability of its own greedy token where each start's first drafted token stands
    (full vocabulary): how sure the base model itself is there, the ceiling the head drafts against."""
    logits = features[torch.tensor(starts) + 1].float() @ head.full_head_weight.float().T
    return torch.softmax(logits, dim=-1).amax(-1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.chain_by_position",
                                     description=__doc__.splitlines()[0].split(":")[0])
    parser.add_argument("--head", required=True, help="a Jakiro or EAGLE-2 head folder (RUN/head) or shipped alias")
    parser.add_argument("--data", required=True, help="self-distilled data folder (its held-out split is used)")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--conversations", type=int, default=8, help="first held-out conversations to roll out")
    parser.add_argument("--holdout-fraction", type=float, default=0.05, help="the split training used")
    parser.add_argument("--steps", type=int, default=5, help="draft steps per chain")
    parser.add_argument("--buckets", default=",".join(map(str, DEFAULT_EDGES)),
                        help="lower edges of the answer-index buckets (default 0,32,128)")
    parser.add_argument("--max-len", type=int, default=1024, help="tokens per conversation (training's max_len)")
    parser.add_argument("--json", default=None, help="also write the table here")
    return parser


def run_command(args: argparse.Namespace) -> list[dict]:
    edges = parse_edges(args.buckets)
    if args.conversations < 1 or args.steps < 1:
        raise ConfigError("--conversations and --steps must be >= 1")
    from ..heads import resolve_head_path
    from ..methods import head_method, load_head
    from .config import TrainConfig
    from .dataset import ShardDataset, split_entries

    folder = resolve_head_path(args.head)
    if head_method(folder) not in ("jakiro", "eagle2"):
        raise ConfigError(f"{args.head} is a {head_method(folder)} head: this command measures Jakiro and "
                          "EAGLE-2 heads (a head that reads the base model's last feature)")
    _, holdout, _ = split_entries(args.data, args.holdout_fraction)
    dataset = ShardDataset(holdout, args.max_len)
    samples = [dataset[i] for i in range(min(args.conversations, len(holdout)))]
    base, _ = load_base_model(args.base_model_path, torch_dtype="float32", device_map=None)
    head = load_head(folder, base_model=base).float().eval()
    rows = chain_by_position(head, samples, TrainConfig(), args.steps, edges)
    for row in rows:
        steps = " / ".join(f"{value:.3f}" for value in row["acc_per_step"])
        print(f"answer tokens {row['answer_tokens']:>8}: {row['rollouts']:5d} rollouts, chain {steps}, "
              f"single-chain τ {row['simulated_accept_length']:.2f}, base model's top-1 probability "
              f"{row['base_top1_probability']:.2f}")
    if args.json:
        record = {"head": str(folder), "data": str(args.data), "conversations": len(samples), "steps": args.steps,
                  "holdout_fraction": args.holdout_fraction, "by_answer_position": rows}
        write_json_atomic(Path(args.json), record, sort_keys=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), run_command, argv)


if __name__ == "__main__":
    main()
