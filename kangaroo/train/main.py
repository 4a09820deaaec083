"""Train a Kangaroo adapter: `python -m kangaroo.train.main --help` (or `accelerate launch -m kangaroo.train.main`).

Reads data made by `jakiro.ge_data.allocation` with the exit layer's hidden states saved
(``--save-layers 2``), builds the adapter from a config JSON (``{"draft": {exit_layer, threshold, steps,
draft_vocab_size}, "train": {...}}``, the same layout and loader as `jakiro.train.main`), trains it
with AdamW and a warmup + cosine schedule on the soft cross-entropy against the base model's
next-token distribution, evaluates on the held-out split every epoch (expected acceptance, top-1,
replayed greedy τ), saves the full training state every epoch (``--resume`` continues after an
interruption with the same result), and exports the adapter folder that `EaModel.from_pretrained` loads.

    python -m kangaroo.train.main --data data/smollm2-selfdistill \\
        --config kangaroo/train/configs/smollm2-135m.json --out runs/kangaroo
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from jakiro.base_models import DEFAULT_BASE_MODEL, load_base_model
from jakiro.commands import exit_on_error
from jakiro.errors import ConfigError
from jakiro.files import write_json_atomic
from jakiro.train.config import RunConfig, load_run_config
from jakiro.train.dataset import ShardDataset, check_data_matches_base, collate, split_entries, token_frequencies
from jakiro.train.main import PROGRESS, EpochShuffle, _progress, cosine_with_warmup, same_settings

from ..model.adapter import KangarooAdapter, new_adapter
from ..model.config import DEFAULT_EXIT_LAYER
from .losses import adapter_loss, layer_key
from .metrics import evaluate_adapter


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
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="conversations per batch per process")
    parser.add_argument("--grad-accum", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop each epoch after N optimizer steps (smoke tests)")
    parser.add_argument("--dtype", default=None, help="mixed precision: bf16 (GPU default) or no (CPU default)")
    return parser


def check_data_has_layer(manifest: dict, exit_layer: int, folder: str) -> None:
    saved = manifest.get("save_layers") or []
    if exit_layer not in saved:
        raise ConfigError(f"data in {folder} holds no {layer_key(exit_layer)} (saved layers: {saved or 'none'}): "
                          f"regenerate it with jakiro.ge_data.allocation --save-layers {exit_layer}, or pick "
                          "--exit-layer among the saved ones")


def build_adapter(run: RunConfig, base_model, data_folder: str) -> KangarooAdapter:
    """A fresh adapter (final norm copied from the base), its draft vocabulary from the data's token counts."""
    adapter = new_adapter(base_model, seed=run.train.seed, **run.draft).float()
    config = adapter.config
    if config.draft_vocab_size is not None:
        counts = token_frequencies(data_folder, config.vocab_size)
        keep = torch.argsort(counts, descending=True, stable=True)[: config.draft_vocab_size]
        adapter.d2t.copy_(torch.sort(keep).values)
        adapter.refresh_head()
    return adapter


def resolve_run(args: argparse.Namespace) -> RunConfig:
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                 "max_len": args.max_len, "warmup_steps": args.warmup_steps, "seed": args.seed,
                 "exit_layer": args.exit_layer, "threshold": args.threshold, "steps": args.steps,
                 "draft_vocab_size": args.draft_vocab_size}
    run = load_run_config(args.config, overrides)
    run.draft.setdefault("exit_layer", DEFAULT_EXIT_LAYER)
    return run


def check_resume(out: Path, run: RunConfig, resume: bool) -> None:
    saved_run = out / "run_config.json"
    if resume:
        if not (out / PROGRESS).is_file():
            raise ConfigError(f"nothing to resume in {out}: no {PROGRESS} (drop --resume to start fresh)")
        if not same_settings(json.loads(saved_run.read_text()), run.to_json()):
            raise ConfigError(f"{out} was trained with other settings ({saved_run}): resume with the same options")
    elif (out / PROGRESS).is_file():
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue or choose another --out")


def train(args: argparse.Namespace) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(args.out)
    run = resolve_run(args)
    check_resume(out, run, args.resume)
    cfg = run.train
    exit_layer = run.draft["exit_layer"]
    precision = args.dtype or ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed)

    train_entries, holdout_entries, manifest = split_entries(args.data, cfg.holdout_fraction)
    check_data_has_layer(manifest, exit_layer, args.data)
    base, _ = load_base_model(args.base_model_path, torch_dtype="float32", device_map=None)
    check_data_matches_base(manifest, base.config, args.data)
    model = build_adapter(run, base, args.data)
    del base
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "run_config.json", run.to_json(), sort_keys=True)

    key = layer_key(exit_layer)
    train_set = ShardDataset(train_entries, cfg.max_len, extra_keys=(key,))
    holdout_set = ShardDataset(holdout_entries, cfg.max_len, extra_keys=(key,))
    holdout = [holdout_set[i] for i in range(min(cfg.eval_sequences, len(holdout_entries)))]
    sampler = EpochShuffle(len(train_set), cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
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
    raw = accelerator.unwrap_model(model)
    for epoch in range(first_epoch, cfg.epochs):
        sampler.shuffle_for(epoch)
        model.train()
        begin, seen, loss_sum, correct, count, steps = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0
        bar = _progress(len(loader), epoch, accelerator.is_local_main_process)
        for batch in loader:
            with accelerator.accumulate(model):
                parts = adapter_loss(model, batch, exit_layer, raw.head_weight)
                accelerator.backward(parts.loss)
                if accelerator.sync_gradients and not deepspeed:  # DeepSpeed clips by norm (its own config)
                    accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            seen += int(batch["attention"].sum())
            loss_sum += float(parts.loss.detach())
            correct += float(parts.correct)
            count += float(parts.count)
            if accelerator.sync_gradients:
                steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / bar.n:.3f}", acc=f"{correct / max(count, 1):.3f}",
                            tok_s=f"{seen / (time.perf_counter() - begin):.0f}")
            if args.max_steps and steps >= args.max_steps:
                break
        bar.close()
        state_name = f"state_{epoch}"
        accelerator.save_state(str(out / "checkpoints" / state_name), safe_serialization=True)
        record = {"epoch": epoch, "train_loss": loss_sum / max(bar.n, 1), "train_top1": correct / max(count, 1),
                  "train_tokens": seen, "epoch_seconds": time.perf_counter() - begin,
                  "lr": scheduler.get_last_lr()[0], "exit_layer": exit_layer}
        record.update({f"holdout_{k}": v for k, v in evaluate_adapter(
            raw, holdout, exit_layer, raw.config.threshold, raw.config.steps, accelerator.device).items()})
        if accelerator.is_main_process:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            write_json_atomic(out / PROGRESS, {"epoch": epoch, "last_state": state_name}, sort_keys=True)
            print(json.dumps(record), flush=True)
        accelerator.wait_for_everyone()
    return export_adapter(accelerator, model, out)


def export_adapter(accelerator, model, out: Path) -> Path:
    """Gather the weights (works under DeepSpeed) and write the adapter folder on the main process."""
    state = accelerator.get_state_dict(model)
    head_dir = out / "head"
    if accelerator.is_main_process:
        raw = accelerator.unwrap_model(model)
        export = KangarooAdapter(raw.config)
        export.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        export.save_pretrained(head_dir)
        print(f"exported adapter to {head_dir}")
    accelerator.wait_for_everyone()
    return head_dir


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), train, argv)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
