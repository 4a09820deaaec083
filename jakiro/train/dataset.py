"""Training samples from data shards: one conversation per item, truncated, with a train/holdout split."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..ge_data.storage import list_shards, load_sample, read_manifest

KEYS = ("input_ids", "loss_mask", "hidden_state")


def check_data_matches_base(manifest: dict, base_config, folder: str | Path) -> None:
    from ..model.configs import base_fingerprint

    if manifest.get("base_fingerprint") != base_fingerprint(base_config):
        raise ConfigError(f"data in {folder} was made with base model {manifest.get('base_model')!r}, whose "
                          f"architecture differs from the base model given: regenerate the data for this base")
    warn_other_base_name(manifest.get("base_model"), getattr(base_config, "name_or_path", None), folder)


def warn_other_base_name(data_base: str | None, base: str | None, folder: str | Path) -> None:
    """Same architecture, another name: the data is usable, but its features are the other model's hidden states."""
    from ..base_models import same_base_model

    if data_base and base and not same_base_model(data_base, base):
        print(f"warning: data in {folder} was made for base model {data_base!r}, not {base!r} (same architecture, "
              f"so it is accepted): the head learns {data_base!r}'s hidden states; regenerate the data unless both "
              "names are the same weights", file=sys.stderr)


class ShardDataset(Dataset):
    """Conversations ``index[i] = (shard path, start, end)``; items hold ids, loss mask and features."""

    def __init__(self, entries: list[tuple[Path, int, int]], max_len: int, extra_keys: tuple[str, ...] = ()):
        self.entries, self.max_len, self.keys = entries, max_len, KEYS + tuple(extra_keys)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, start, end = self.entries[index]
        end = min(end, start + self.max_len)
        sample = load_sample(path, start, end, self.keys)
        sample["input_ids"] = sample["input_ids"].long()
        sample["loss_mask"] = sample["loss_mask"].float()
        for key in self.keys:
            if key.startswith("hidden_state"):
                sample[key] = sample[key].float()
        return sample


def split_entries(folder: str | Path, holdout_fraction: float,
                  holdout_from: str | Path | None = None) -> tuple[list, list, dict]:
    """All conversations of a data folder split into train and held-out parts (the last fraction of them).

    ``holdout_from``: hold out that folder's held-out split instead (the same fraction of it) and train on every
    conversation of ``folder`` but those, so the held-out conversations stay the same while the data grows
    (``folder`` a larger view of the same generated data, `jakiro.ge_data.subset`; conversations are matched by
    shard file and offsets)."""
    manifest = read_manifest(folder)
    if not manifest.get("complete", True):
        print(f"warning: {folder} is still being generated; training on the {len(manifest.get('shards', []))} "
              f"finished shard(s) of {manifest.get('planned_shards')}")
    entries = []
    for shard in list_shards(folder):
        bounds = shard.offsets.tolist()
        entries += [(shard.path, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 3]
    if len(entries) < 2:
        raise ConfigError(f"{folder} holds {len(entries)} usable conversation(s): generate more data")
    if holdout_from is not None:
        return fixed_holdout_split(folder, entries, manifest, holdout_from, holdout_fraction)
    holdout = max(1, int(round(len(entries) * holdout_fraction)))
    return entries[:-holdout], entries[-holdout:], manifest


def fixed_holdout_split(folder: str | Path, entries: list, manifest: dict, holdout_from: str | Path,
                        holdout_fraction: float) -> tuple[list, list, dict]:
    """``entries`` minus the held-out split of ``holdout_from``, and that split (see `split_entries`)."""
    _, holdout, other = split_entries(holdout_from, holdout_fraction)
    if other.get("base_fingerprint") != manifest.get("base_fingerprint"):
        raise ConfigError(f"--holdout-from {holdout_from} holds data of base model {other.get('base_model')!r}, "
                          f"{folder} of {manifest.get('base_model')!r}: hold out conversations of the same base model")
    held = {conversation_key(entry) for entry in holdout}
    train = [entry for entry in entries if conversation_key(entry) not in held]
    if len(entries) - len(train) != len(held):
        raise ConfigError(f"{folder} holds {len(entries) - len(train)} of the {len(held)} conversations held out in "
                          f"{holdout_from}: --holdout-from needs a data folder that contains the other one's shards "
                          "(a larger `python -m jakiro.ge_data.subset` view of the same data)")
    if not train:
        raise ConfigError(f"{folder} holds no conversation outside the held-out split of {holdout_from}: "
                          "pass a larger data folder")
    return train, holdout, manifest


def conversation_key(entry: tuple) -> tuple:
    """Which stored conversation an entry is, whatever folder or link it was reached through."""
    path, start, end = entry
    stat = Path(path).stat()
    return stat.st_dev, stat.st_ino, start, end


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-pad every field with zeros to the longest conversation; ``attention`` marks real tokens."""
    width = max(len(item["input_ids"]) for item in batch)
    out = {}
    for key in batch[0]:
        first = batch[0][key]
        padded = first.new_zeros((len(batch), width) + tuple(first.shape[1:]))
        for row, item in enumerate(batch):
            padded[row, : len(item[key])] = item[key]
        out[key] = padded
    out["attention"] = torch.zeros(len(batch), width)
    for row, item in enumerate(batch):
        out["attention"][row, : len(item["input_ids"])] = 1
    return out


def token_frequencies(folder: str | Path, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in the data (assistant tokens only), for the reduced draft vocabulary."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    from safetensors import safe_open

    for shard in list_shards(folder):
        with safe_open(str(shard.path), framework="pt") as handle:
            ids = handle.get_tensor("input_ids").long()
            mask = handle.get_tensor("loss_mask").bool()
        counts += torch.bincount(ids[mask], minlength=vocab_size)[:vocab_size]
    return counts


def draft_vocabulary(counts: torch.Tensor, size: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The ``size`` draft token ids, in id order: ``keep``'s ids when they fit, filled up with the most
    frequent others (``counts[i]`` = occurrences of token i; ties go to the lower id)."""
    if not 0 < size <= len(counts):
        raise ConfigError(f"a draft vocabulary must have 1..{len(counts)} tokens, got {size}")
    score = counts.double().clone()
    if keep is not None and len(keep) <= size:
        score[keep.long()] = float("inf")
    chosen = torch.argsort(score, descending=True, stable=True)[:size]
    return torch.sort(chosen).values


def pick_draft_vocabulary(head, folder: str | Path) -> None:
    """Give a head with a reduced draft vocabulary (``config.draft_vocab_size``) the data's most frequent
    assistant tokens, in id order (``d2t``), and rebuild its output head; a full-vocabulary head is left alone."""
    config = head.config
    if config.draft_vocab_size is None:
        return
    counts = token_frequencies(folder, config.vocab_size)
    head.d2t.copy_(draft_vocabulary(counts, config.draft_vocab_size))
    head.refresh_head()
