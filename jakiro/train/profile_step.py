"""Where a training step's time goes: `python -m jakiro.train.profile_step --help`.

Builds the head a config describes for a base model (its real shapes: hidden size, vocabulary, draft
vocabulary), feeds it batches (from a data folder, or random features of the right shape), and times
the parts of an optimizer step separately: loading a batch, the head's rollout forward, the loss (teacher
distribution and soft cross-entropy over the output head), backward, and the optimizer. It prints
tokens/s and the share of each part, and with ``--ops`` the operators torch.profiler sees most.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..base_models import DEFAULT_BASE_MODEL, load_base_model
from ..commands import exit_on_error
from ..errors import ConfigError
from ..model.cnets import JakiroDraftModel, init_weights
from ..model.configs import DraftConfig
from .config import load_run_config
from .losses import loss_from_outputs, rollout_outputs


def random_batch(batch_size: int, length: int, hidden: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"hidden_state": torch.randn(batch_size, length, hidden, generator=generator),
            "input_ids": torch.randint(vocab, (batch_size, length), generator=generator),
            "loss_mask": (torch.rand(batch_size, length, generator=generator) > 0.2).float(),
            "attention": torch.ones(batch_size, length)}


def profile(args: argparse.Namespace) -> dict:
    overrides = {"rollout_steps_train": args.rollout_steps, "batch_size": args.batch_size, "max_len": args.seq_len}
    run = load_run_config(args.config, overrides)
    cfg = run.train
    if args.steps < 1:
        raise ConfigError("--steps must be >= 1")
    torch.set_num_threads(args.threads)
    base, _ = load_base_model(args.base_model_path, torch_dtype="float32", device_map="cpu")
    model = JakiroDraftModel(DraftConfig.from_base_config(base.config, **run.draft))
    init_weights(model)
    model.bind_base(base)
    del base
    head_dtype = torch.bfloat16 if args.head_bf16 else torch.float32
    if args.data:
        from torch.utils.data import DataLoader

        from .dataset import ShardDataset, collate, split_entries

        entries, _, _ = split_entries(args.data, cfg.holdout_fraction)
        loader = DataLoader(ShardDataset(entries, cfg.max_len), batch_size=cfg.batch_size, collate_fn=collate)

        def batches():
            while True:
                yield from loader

        stream = batches()
        next_batch = lambda: next(stream)  # noqa: E731
    else:
        batch = random_batch(cfg.batch_size, cfg.max_len, model.config.hidden_size, model.config.vocab_size)
        next_batch = lambda: batch  # noqa: E731
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    noise = torch.Generator().manual_seed(0)
    parts = {"data": 0.0, "forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    tokens = 0

    def step(timed: bool) -> None:
        nonlocal tokens
        marks = [time.perf_counter()]
        batch = next_batch()
        marks.append(time.perf_counter())
        outputs = rollout_outputs(model, batch, cfg, cfg.rollout_steps_train, model.config.contrastive, noise)
        marks.append(time.perf_counter())
        loss, _ = loss_from_outputs(outputs, batch, cfg, model.head_weight, head_dtype)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad()
        marks.append(time.perf_counter())
        if timed:
            for name, a, b in zip(parts, marks, marks[1:]):
                parts[name] += b - a
            tokens += int(batch["attention"].sum())

    step(False)  # warm-up
    for _ in range(args.steps):
        step(True)
    total = sum(parts.values())
    result = {"tokens_per_second": tokens / total, "seconds_per_step": total / args.steps,
              "share": {k: round(v / total, 3) for k, v in parts.items()},
              "shape": {"batch_size": cfg.batch_size, "max_len": cfg.max_len, "rollout_steps": cfg.rollout_steps_train,
                        "hidden": model.config.hidden_size, "draft_vocab": model.draft_vocab_size,
                        "head_dtype": str(head_dtype).replace("torch.", ""), "threads": args.threads,
                        "data": "folder" if args.data else "random"}}
    print(json.dumps(result))
    if args.ops:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step(False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.profile_step", description=__doc__.splitlines()[0])
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "smollm2-135m.json"),
                        help="training config JSON (default: the SmolLM2 head's)")
    parser.add_argument("--data", default=None, help="data folder (default: random features of the real shape)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per conversation (random data)")
    parser.add_argument("--rollout-steps", type=int, default=None)
    parser.add_argument("--head-bf16", action="store_true", help="output-head matmuls in bf16 (as a bf16 run does)")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ops", type=int, default=0, help="also print the N costliest operators (torch.profiler)")
    return parser


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), profile, argv)


if __name__ == "__main__":
    main()
