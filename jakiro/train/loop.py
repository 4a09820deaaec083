"""The one training loop of every draft head (Jakiro, EAGLE-2, Jakiro*, Kangaroo).

accelerate setup, train / held-out split, AdamW with a warmup + cosine schedule, ``prepare``, resume,
the epoch loop (gradient accumulation, value clipping, progress bar), the full training state and a
``metrics.jsonl`` line every epoch, ``progress.json`` (written last, atomically: what ``--resume`` trusts),
the exported head folder and, for tree drafters, τ by tree size. What differs between methods (building
the head, the data keys it reads, its loss, its held-out metrics) is a `TrainingRecipe`, picked by the
method registry (`jakiro.methods.training_recipe`); a method's command only parses its flags.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..base_models import load_base_model
from ..errors import ConfigError
from ..files import write_json_atomic
from ..methods import head_class
from .config import RunConfig, TrainConfig
from .dataset import (ShardDataset, check_data_matches_base, collate, draft_vocabulary, split_entries,
                      token_frequencies)

PROGRESS = "progress.json"


class TrainingRecipe:
    """What one method's training does differently; the loop calls these hooks in this order.

    A recipe is made from the resolved `RunConfig` before anything is checked or written, and may fill in
    its method's defaults in ``run.draft`` (they are saved with the run and compared on ``--resume``)."""

    noun = "head"                       # what the export prints ("exported head to ...")
    extra_keys: tuple[str, ...] = ()    # data keys read besides ids, loss mask and the last hidden state
    measures_tau = True                 # τ by tree size after training (tree drafters only)

    def __init__(self, run: RunConfig):
        self.run = run

    def check_data(self, manifest: dict, folder: str) -> None:
        """Refuse data this method cannot train on, before the base model loads."""

    def build(self, base_model: nn.Module, data_folder: str) -> nn.Module:
        """A fresh float32 head bound to ``base_model`` (seeded from ``run.train.seed``)."""
        raise NotImplementedError

    def batch_loss(self, model: nn.Module, raw: nn.Module, batch: dict[str, torch.Tensor],
                   noise: torch.Generator, head_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss to backpropagate, weighted top-1 agreements, weighted positions) of one padded batch;
        ``model`` may be wrapped (DDP, DeepSpeed), ``raw`` is the module itself."""
        raise NotImplementedError

    def evaluate(self, raw: nn.Module, holdout: list[dict[str, torch.Tensor]], device: torch.device) -> dict:
        """The held-out metrics of an epoch (written as ``holdout_<key>``)."""
        raise NotImplementedError

    def record(self) -> dict:
        """Fields every epoch's metrics line carries besides the loop's own."""
        return {}


@dataclass(frozen=True)
class TauSettings:
    """τ by tree size on held-out prompts after training (`jakiro.train.measure_tau`); 0 prompts: skip."""

    prompts: int
    max_new_tokens: int
    tree_sizes: tuple[int, ...]


@dataclass(frozen=True)
class TrainingJob:
    """Where a run reads and writes, and the command-line settings that are not part of its `RunConfig`."""

    data: str
    base_model_path: str
    out: Path
    resume: bool = False
    dtype: str | None = None        # mixed precision: bf16 (GPU default) or no (CPU default)
    max_steps: int | None = None    # stop each epoch after N optimizer steps (smoke tests)
    tau: TauSettings | None = None
    init_head: str | None = None    # warm start: a trained head's folder or alias (`warm_start`)
    eval_only: bool = False         # only the held-out metrics of ``init_head`` (`evaluate_only`)
    holdout_from: str | None = None  # hold out another data folder's held-out split (`split_entries`)


def same_settings(previous: dict, current: dict) -> bool:
    """Whether a saved run config matches; train fields it lacks (added later) count at their defaults."""
    defaults = json.loads(json.dumps(asdict(TrainConfig())))
    previous = dict(previous, train={**defaults, **previous.get("train", {})})
    return previous == json.loads(json.dumps(current))


def check_resume(out: Path, run: RunConfig, resume: bool) -> None:
    """``--resume`` needs a run with the same settings in ``out``; a fresh run needs an unused ``out``."""
    saved_run = out / "run_config.json"
    if resume:
        if not (out / PROGRESS).is_file():
            raise ConfigError(f"nothing to resume in {out}: no {PROGRESS} (drop --resume to start fresh)")
        if not same_settings(json.loads(saved_run.read_text()), run.to_json()):
            raise ConfigError(f"{out} was trained with other settings ({saved_run}): resume with the same options")
    elif (out / PROGRESS).is_file():
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue or choose another --out")


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


def warm_start(model: nn.Module, init_head: str, base: nn.Module, data: str | Path) -> None:
    """Copy a trained head's weights (draft vocabulary included) into the freshly built ``model``.

    The head must be of the run's method with the same tensor shapes; otherwise one line names both. Only the
    draft vocabulary may differ in size (a run's ``--draft-vocab-size``): the head's own tokens are kept where
    they fit and the rest are ``data``'s most frequent (as `jakiro.train.revocab` does)."""
    from ..heads import resolve_head_path
    from ..methods import head_method, load_head

    folder = resolve_head_path(init_head)
    method = getattr(model.config, "method", None)
    found = head_method(folder)
    if head_class(found) is not type(model):  # (an EAGLE-2 head is a one-expert Jakiro head: same class)
        raise ConfigError(f"--init-head {init_head!r} is a {found} head but this run trains a {method} head: "
                          f"pass a {method} head or drop --init-head")
    source = load_head(folder, base_model=base)
    state, expected = source.state_dict(), model.state_dict()
    wrong = sorted(set(state) ^ set(expected)) + sorted(k for k in set(state) & set(expected)
                                                          if state[k].shape != expected[k].shape)
    if wrong and wrong != ["d2t"]:
        raise ConfigError(f"--init-head {init_head!r} does not fit this run's head (differs in {wrong[:3]}): "
                          f"use the same --config, --num-experts and --draft-vocab-size as that head was trained with")
    if wrong:  # only the draft vocabulary's size differs: the run asked for another (`jakiro.train.revocab`)
        kept = state.pop("d2t", None)
        if getattr(model, "d2t", None) is not None:
            state["d2t"] = draft_vocabulary(token_frequencies(data, model.config.vocab_size),
                                            model.config.draft_vocab_size, keep=kept).to(model.d2t.dtype)
        print(f"--init-head {init_head}: draft vocabulary {len(kept) if kept is not None else 'full'} -> "
              f"{model.config.draft_vocab_size or 'full'} tokens (its own kept where they fit, the rest this "
              "data's most frequent)", file=sys.stderr)
    model.load_state_dict(state, strict=True)
    if hasattr(model, "refresh_head"):
        model.refresh_head()  # the output-head rows follow the loaded draft vocabulary


def cosine_with_warmup(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_with_recipe(run: RunConfig, recipe: TrainingRecipe, job: TrainingJob) -> Path:
    """Train (or resume) a run to the end and export its head; returns the head folder ``out/head``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = job.out
    if job.eval_only:
        if job.init_head is None or job.resume:
            raise ConfigError("--eval-only evaluates the head given by --init-head (and cannot --resume): "
                              "pass --init-head HEAD")
    else:
        check_resume(out, run, job.resume)
    cfg = run.train
    precision = job.dtype or ("bf16" if torch.cuda.is_available() else "no")
    head_dtype = torch.bfloat16 if precision == "bf16" else torch.float32  # the output-head matmuls of the loss
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    set_seed(cfg.seed)

    train_entries, holdout_entries, manifest = split_entries(job.data, cfg.holdout_fraction, job.holdout_from)
    recipe.check_data(manifest, job.data)
    base, _ = load_base_model(job.base_model_path, torch_dtype="float32", device_map=None)
    check_data_matches_base(manifest, base.config, job.data)
    model = recipe.build(base, job.data)
    if job.init_head is not None and not job.resume:  # a resumed run restores its own state below
        warm_start(model, job.init_head, base, job.data)
    del base
    if job.eval_only:
        return evaluate_only(recipe, model, job, holdout_entries, manifest, accelerator.device)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "run_config.json", run.to_json(), sort_keys=True)

    train_set = ShardDataset(train_entries, cfg.max_len, extra_keys=recipe.extra_keys)
    holdout = held_out_samples(recipe, holdout_entries)
    sampler = EpochShuffle(len(train_set), cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / cfg.grad_accum)
    if job.max_steps:
        steps_per_epoch = min(steps_per_epoch, job.max_steps)
    scheduler = cosine_with_warmup(optimizer, min(cfg.warmup_steps, steps_per_epoch * cfg.epochs // 10 + 1),
                                   steps_per_epoch * cfg.epochs)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    deepspeed = accelerator.distributed_type.name == "DEEPSPEED"
    first_epoch = 0
    if job.resume:
        progress = json.loads((out / PROGRESS).read_text())
        accelerator.load_state(str(out / "checkpoints" / progress["last_state"]))
        first_epoch = progress["epoch"] + 1
    metrics_path = out / "metrics.jsonl"
    raw = accelerator.unwrap_model(model)
    for epoch in range(first_epoch, cfg.epochs):
        sampler.shuffle_for(epoch)
        noise = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        begin, seen, loss_tokens, loss_sum, correct, count, steps = time.perf_counter(), 0, 0, 0.0, 0.0, 0.0, 0
        bar = progress_bar(len(loader), epoch, accelerator.is_local_main_process)
        for batch in loader:
            with accelerator.accumulate(model):
                loss, batch_correct, batch_count = recipe.batch_loss(model, raw, batch, noise, head_dtype)
                accelerator.backward(loss)
                if accelerator.sync_gradients and not deepspeed:  # DeepSpeed clips by norm (ds_config.json)
                    accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            seen += int(batch["attention"].sum())
            loss_tokens += int((batch["attention"] * batch["loss_mask"]).sum())
            loss_sum += float(loss.detach())
            correct += float(batch_correct)
            count += float(batch_count)
            if accelerator.sync_gradients:
                steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / bar.n:.3f}", acc=f"{correct / max(count, 1):.3f}",
                            tok_s=f"{seen / (time.perf_counter() - begin):.0f}")
            if job.max_steps and steps >= job.max_steps:
                break
        bar.close()
        train_seconds = time.perf_counter() - begin
        state_name = f"state_{epoch}"
        accelerator.save_state(str(out / "checkpoints" / state_name), safe_serialization=True)
        record = {"epoch": epoch, "train_loss": loss_sum / max(bar.n, 1), "train_top1": correct / max(count, 1),
                  "train_tokens": seen, "train_loss_tokens": loss_tokens,
                  "train_tokens_per_second": seen / max(train_seconds, 1e-9), **recipe.record(),
                  **({"init_head": job.init_head} if job.init_head else {}),
                  **({"holdout_from": job.holdout_from} if job.holdout_from else {}),
                  "lr": scheduler.get_last_lr()[0]}
        record.update({f"holdout_{k}": v for k, v in recipe.evaluate(raw, holdout, accelerator.device).items()})
        record["holdout_answers"] = "base model's own" if manifest.get("regenerate") else "from the data set"
        record["epoch_seconds"] = time.perf_counter() - begin
        if accelerator.is_main_process:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            write_json_atomic(out / PROGRESS, {"epoch": epoch, "last_state": state_name}, sort_keys=True)
            print(json.dumps(record), flush=True)
        accelerator.wait_for_everyone()
    head_dir = export_head(accelerator, model, out, recipe.noun)
    if job.tau and job.tau.prompts and accelerator.is_main_process:
        measure_tau(recipe, job, head_dir, accelerator.device)
    accelerator.wait_for_everyone()
    return head_dir


def held_out_samples(recipe: TrainingRecipe, entries: list) -> list[dict[str, torch.Tensor]]:
    """The held-out conversations every epoch is measured on: the first ``eval_sequences`` of the split."""
    cfg = recipe.run.train
    dataset = ShardDataset(entries, cfg.max_len, extra_keys=recipe.extra_keys)
    return [dataset[i] for i in range(min(cfg.eval_sequences, len(entries)))]


def evaluate_only(recipe: TrainingRecipe, model: nn.Module, job: TrainingJob, holdout_entries: list, manifest: dict,
                  device: torch.device) -> Path:
    """The held-out metrics a training epoch records, for a trained head on this data's held-out split, so heads
    trained elsewhere (a shipped one, an earlier stage) compare on the same conversations. Writes
    ``out/holdout_eval.json``."""
    holdout = held_out_samples(recipe, holdout_entries)
    record = {"eval_only": True, "head": str(job.init_head), "data": str(job.data),
              **({"holdout_from": job.holdout_from} if job.holdout_from else {}),
              "holdout_conversations": len(holdout), "eval_starts": recipe.run.train.eval_starts}
    record.update({f"holdout_{k}": v for k, v in recipe.evaluate(model.to(device), holdout, device).items()})
    record["holdout_answers"] = "base model's own" if manifest.get("regenerate") else "from the data set"
    job.out.mkdir(parents=True, exist_ok=True)
    path = job.out / "holdout_eval.json"
    write_json_atomic(path, record, sort_keys=True)
    print(json.dumps(record), flush=True)
    return path


def measure_tau(recipe: TrainingRecipe, job: TrainingJob, head_dir: Path, device: torch.device) -> None:
    if not recipe.measures_tau:
        print(f"note: τ by tree size is not measured for this {recipe.noun} (its rounds do not follow the tree "
              "size); measure it with its method's evaluation commands", flush=True)
        return
    from .measure_tau import measure_run

    measure_run(head_dir, job.holdout_from or job.data, job.base_model_path, job.out, recipe.run.train.holdout_fraction,
                job.tau.prompts, job.tau.max_new_tokens, job.tau.tree_sizes, device=device)


def export_head(accelerator, model, out: Path, noun: str = "head") -> Path:
    """Gather the weights (works under DeepSpeed) and write the head folder on the main process."""
    state = accelerator.get_state_dict(model)
    head_dir = out / "head"
    if accelerator.is_main_process:
        raw = accelerator.unwrap_model(model)
        export = head_class(raw.config.method)(raw.config)
        export.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        export.save_pretrained(head_dir)
        print(f"exported {noun} to {head_dir}")
    accelerator.wait_for_everyone()
    return head_dir


def progress_bar(total: int, epoch: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}", unit="batch", disable=not enabled, dynamic_ncols=True)
