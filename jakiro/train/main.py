"""Train a draft head: `accelerate launch -m jakiro.train.main --help` (or plain `python -m` on one device).

Reads data made by `jakiro.ge_data.allocation`, builds the head from a config JSON (Jakiro: 2
experts + contrastive branch; ``--num-experts 1 --no-contrastive``: the EAGLE-2 baseline head),
trains with AdamW and a warmup + cosine schedule, evaluates on a held-out split every epoch,
saves the full training state every epoch (``--resume`` continues from the last one), and exports
the head as a folder that `EaModel.from_pretrained` loads. ``--rollout-steps K`` adds the training-time
rollout (`jakiro.train.unroll`; K = 1 is the papers' recipe); after training, τ by tree size is measured
on held-out prompts with the real engine (`jakiro.train.measure_tau`) and appended to ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..base_models import DEFAULT_BASE_MODEL, load_base_model
from ..commands import exit_on_error
from ..errors import ConfigError
from ..files import write_json_atomic
from ..methods import head_class, new_head, training_loss
from ..model.cnets import JakiroDraftModel
from ..model.configs import DraftConfig
from .config import RunConfig, TrainConfig, load_run_config
from .dataset import ShardDataset, check_data_matches_base, collate, split_entries, token_frequencies
from .measure_tau import DEFAULT_TREE_SIZES, parse_tree_sizes
from .rollout import evaluate

PROGRESS = "progress.json"
TRAINABLE_METHODS = ("jakiro", "jakiro_star")  # --method choices (EAGLE-2 heads: --num-experts 1 --no-contrastive)
MAX_ROLLOUT_STEPS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.main", description="Train a Jakiro / EAGLE-2 draft head.")
    parser.add_argument("--data", required=True, help="data folder written by jakiro.ge_data.allocation")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--config", default=None, help="JSON with 'draft' and 'train' sections (jakiro/train/configs/)")
    parser.add_argument("--out", required=True, help="output folder: checkpoints/, metrics.jsonl, head/")
    parser.add_argument("--resume", action="store_true", help="continue from the last saved epoch in --out")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="conversations per batch per process")
    parser.add_argument("--grad-accum", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--num-experts", type=int, default=None)
    parser.add_argument("--method", choices=TRAINABLE_METHODS, default=None,
                        help="head method (default: the config's, else jakiro; an EAGLE-2 head is --num-experts 1 "
                             "--no-contrastive); --method jakiro_star is `python -m jakiro_star.train.main`")
    parser.add_argument("--no-contrastive", action="store_true", help="no contrastive branch (EAGLE-2 head with 1 expert)")
    parser.add_argument("--draft-vocab-size", type=int, default=None, help="predict only the N most frequent tokens")
    parser.add_argument("--rollout-steps", type=int, default=None, metavar="K",
                        help="training-time rollout: steps 2..K feed the head its own predicted features, with a loss "
                             "on every step (1, the default, is the papers' recipe; config field rollout_steps_train)")
    parser.add_argument("--rollout-decay", type=float, default=None, metavar="W",
                        help="loss weight of rollout step j is W**(j-1) (default 0.8; config field rollout_decay)")
    parser.add_argument("--tau-prompts", type=int, default=4,
                        help="after training, measure τ by tree size on this many held-out prompts (0: skip)")
    parser.add_argument("--tau-max-new-tokens", type=int, default=32, help="new tokens per prompt for that measurement")
    parser.add_argument("--tau-tree-sizes", default=",".join(map(str, DEFAULT_TREE_SIZES)),
                        help="tree sizes (nodes, root included) for that measurement, comma-separated")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N optimizer steps (smoke tests)")
    parser.add_argument("--dtype", default=None, help="mixed precision: bf16 (GPU default) or no (CPU default)")
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


def same_settings(previous: dict, current: dict) -> bool:
    """Whether a saved run config matches; train fields it lacks (added later) count at their defaults."""
    defaults = json.loads(json.dumps(asdict(TrainConfig())))
    previous = dict(previous, train={**defaults, **previous.get("train", {})})
    return previous == json.loads(json.dumps(current))


def build_head(run: RunConfig, base_model, data_folder: str) -> JakiroDraftModel:
    """A fresh head of the run's method (a `JakiroDraftModel` or a subclass such as Jakiro*'s)."""
    config = DraftConfig.from_base_config(base_model.config, **run.draft)
    torch.manual_seed(run.train.seed)
    model = new_head(config, base_model)  # the class of config.method (jakiro.methods)
    if config.draft_vocab_size is not None:
        counts = token_frequencies(data_folder, config.vocab_size)
        keep = torch.argsort(counts, descending=True, stable=True)[: config.draft_vocab_size]
        model.d2t.copy_(torch.sort(keep).values)
        model.refresh_head()
    return model


class EpochShuffle(torch.utils.data.Sampler):
    """A permutation fixed by (seed, epoch), so a resumed run sees exactly the batches a straight run would.

    The epoch is set through `shuffle_for`, not `set_epoch`: accelerate calls `set_epoch` with its own
    iteration counter, which restarts at 0 in a resumed process."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def shuffle_for(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def cosine_with_warmup(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(args: argparse.Namespace) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(args.out)
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                 "max_len": args.max_len, "warmup_steps": args.warmup_steps, "seed": args.seed,
                 "num_experts": args.num_experts, "draft_vocab_size": args.draft_vocab_size,
                 "rollout_steps_train": args.rollout_steps, "rollout_decay": args.rollout_decay}
    if args.no_contrastive:
        overrides["contrastive"] = False
    if args.method is not None:
        overrides["method"] = args.method
    run = load_run_config(args.config, overrides)
    check_train_config(run.train)
    tree_sizes = parse_tree_sizes(args.tau_tree_sizes)
    if args.tau_prompts < 0 or args.tau_max_new_tokens < 1:
        raise ConfigError("--tau-prompts must be >= 0 and --tau-max-new-tokens >= 1")
    if run.draft.get("num_experts") == 1 and "contrastive" not in run.draft:
        run.draft["contrastive"] = False
    saved_run = out / "run_config.json"
    if args.resume:
        if not (out / PROGRESS).is_file():
            raise ConfigError(f"nothing to resume in {out}: no {PROGRESS} (drop --resume to start fresh)")
        if not same_settings(json.loads(saved_run.read_text()), run.to_json()):
            raise ConfigError(f"{out} was trained with other settings ({saved_run}): resume with the same options")
    elif (out / PROGRESS).is_file():
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue or choose another --out")
    cfg = run.train
    cuda = torch.cuda.is_available()
    precision = args.dtype or ("bf16" if cuda else "no")
    head_dtype = torch.bfloat16 if precision == "bf16" else torch.float32  # the output-head matmuls of the loss
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed)

    train_entries, holdout_entries, manifest = split_entries(args.data, cfg.holdout_fraction)
    base, _ = load_base_model(args.base_model_path, torch_dtype="float32", device_map=None)
    check_data_matches_base(manifest, base.config, args.data)
    model = build_head(run, base, args.data)
    del base
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(saved_run, run.to_json(), sort_keys=True)

    train_set = ShardDataset(train_entries, cfg.max_len)
    holdout = [ShardDataset(holdout_entries, cfg.max_len)[i] for i in range(min(cfg.eval_sequences, len(holdout_entries)))]
    sampler = EpochShuffle(len(train_set), cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / cfg.grad_accum)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    scheduler = cosine_with_warmup(optimizer, min(cfg.warmup_steps, steps_per_epoch * cfg.epochs // 10 + 1),
                                   steps_per_epoch * cfg.epochs)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    deepspeed = accelerator.distributed_type.name == "DEEPSPEED"
    first_epoch = 0
    if args.resume:
        progress = json.loads((out / PROGRESS).read_text())
        accelerator.load_state(str(out / "checkpoints" / progress["last_state"]))
        first_epoch = progress["epoch"] + 1
    metrics_path = out / "metrics.jsonl"
    raw = accelerator.unwrap_model(model)
    loss_fn = training_loss(raw.config.method)  # Jakiro / EAGLE-2: draft_loss; Jakiro*: its own (jakiro.methods)
    for epoch in range(first_epoch, cfg.epochs):
        sampler.shuffle_for(epoch)
        noise = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        begin, seen, loss_tokens, loss_sum, correct, count, steps = time.perf_counter(), 0, 0, 0.0, 0.0, 0.0, 0
        bar = _progress(len(loader), epoch, accelerator.is_local_main_process)
        for batch in loader:
            with accelerator.accumulate(model):
                loss, parts = loss_fn(model, batch, cfg, noise, raw.head_weight, raw.config.contrastive, head_dtype)
                accelerator.backward(loss)
                if accelerator.sync_gradients and not deepspeed:  # DeepSpeed clips by norm (ds_config.json)
                    accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            seen += int(batch["attention"].sum())
            loss_tokens += int((batch["attention"] * batch["loss_mask"]).sum())
            loss_sum += float(loss.detach())
            correct += float(parts["mix"].correct)
            count += float(parts["mix"].count)
            if accelerator.sync_gradients:
                steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / bar.n:.3f}", acc=f"{correct / max(count, 1):.3f}",
                            tok_s=f"{seen / (time.perf_counter() - begin):.0f}")
            if args.max_steps and steps >= args.max_steps:
                break
        bar.close()
        train_seconds = time.perf_counter() - begin
        state_name = f"state_{epoch}"
        accelerator.save_state(str(out / "checkpoints" / state_name), safe_serialization=True)
        record = {"epoch": epoch, "train_loss": loss_sum / max(bar.n, 1), "train_top1": correct / max(count, 1),
                  "train_tokens": seen, "train_loss_tokens": loss_tokens,
                  "train_tokens_per_second": seen / max(train_seconds, 1e-9), "rollout_steps_train": cfg.rollout_steps_train,
                  "lr": scheduler.get_last_lr()[0]}
        record.update({f"holdout_{k}": v for k, v in evaluate(raw, holdout, cfg, accelerator.device).items()})
        record["holdout_answers"] = "base model's own" if manifest.get("regenerate") else "from the data set"
        record["epoch_seconds"] = time.perf_counter() - begin
        if accelerator.is_main_process:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            write_json_atomic(out / PROGRESS, {"epoch": epoch, "last_state": state_name}, sort_keys=True)
            print(json.dumps(record), flush=True)
        accelerator.wait_for_everyone()
    head_dir = export_head(accelerator, model, out)
    if args.tau_prompts and accelerator.is_main_process:
        from .measure_tau import measure_run

        measure_run(head_dir, args.data, args.base_model_path, out, cfg.holdout_fraction, args.tau_prompts,
                    args.tau_max_new_tokens, tree_sizes, device=accelerator.device)
    accelerator.wait_for_everyone()
    return head_dir


def export_head(accelerator, model, out: Path) -> Path:
    """Gather the weights (works under DeepSpeed) and write the head folder on the main process."""
    state = accelerator.get_state_dict(model)
    head_dir = out / "head"
    if accelerator.is_main_process:
        raw = accelerator.unwrap_model(model)
        export = head_class(raw.config.method)(raw.config)
        export.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        export.save_pretrained(head_dir)
        print(f"exported head to {head_dir}")
    accelerator.wait_for_everyone()
    return head_dir


def _progress(total: int, epoch: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}", unit="batch", disable=not enabled, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), train, argv)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
