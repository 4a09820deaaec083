"""On-disk training data: sharded safetensors plus a manifest.

Each shard holds the concatenation of several conversations: ``input_ids`` [T] int32, ``loss_mask``
[T] uint8, ``hidden_state`` [T, H] bf16 (the base model's last hidden state after its final norm),
optional ``hidden_state_layer{l}`` [T, H] bf16, and ``offsets`` [n+1] int64 (conversation
boundaries). Shards are written atomically (temp file, then rename), so a finished shard is whole
and a rerun skips it. The manifest names the base model, its architecture fingerprint and the template.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ConfigError

MANIFEST = "manifest.json"
TEXT_DIR = "conversations"  # regenerated conversations as ShareGPT JSONL, one file per shard
FORMAT_VERSION = 1


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def parse_shard_ranges(text: str, option: str = "--only-shards") -> list[int]:
    """Shard indices from ``"0-3,7,10-12"`` (inclusive ranges), sorted and without repeats."""
    indices: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: expected shard indices and ranges like '0-3,7,10-12'") from None
        if low < 0 or high < low:
            raise ConfigError(f"{option} {text!r}: {part!r} is not a range of shard indices (low-high, low <= high)")
        indices.update(range(low, high + 1))
    return sorted(indices)


def write_shard(path: Path, samples: list[dict[str, torch.Tensor]], metadata: dict[str, str]) -> int:
    """Write samples (each with input_ids, loss_mask, hidden_state[, hidden_state_layerN]); return tokens."""
    lengths = [len(s["input_ids"]) for s in samples]
    offsets = torch.tensor([0] + lengths).cumsum(0)
    tensors = {"offsets": offsets.long()}
    for key in samples[0]:
        tensors[key] = torch.cat([s[key] for s in samples]).contiguous()
    tensors["input_ids"] = tensors["input_ids"].to(torch.int32)
    tensors["loss_mask"] = tensors["loss_mask"].to(torch.uint8)
    for key in list(tensors):
        if key.startswith("hidden_state"):
            tensors[key] = tensors[key].to(torch.bfloat16)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return int(offsets[-1])


@dataclass
class Shard:
    path: Path
    offsets: torch.Tensor

    def __len__(self) -> int:
        """Conversations in the shard (a shard with none holds one empty placeholder, not counted)."""
        return int((self.offsets[1:] > self.offsets[:-1]).sum())


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{folder} has no {MANIFEST}: pass a folder written by `python -m jakiro.ge_data.allocation`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ConfigError(f"{path} is corrupt: regenerate the data (finished shards are kept)") from None


def load_sample(shard: Path, start: int, end: int, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """One conversation's tensors by slicing (safetensors reads only those rows)."""
    with safe_open(str(shard), framework="pt") as handle:
        return {key: handle.get_slice(key)[start:end] for key in keys}


def list_shards(folder: str | Path) -> list[Shard]:
    shards = []
    for path in sorted(Path(folder).glob("shard_*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                offsets = handle.get_tensor("offsets")
        except Exception as err:
            raise ConfigError(f"shard {path} is unreadable ({err}): delete it and rerun data generation") from None
        shards.append(Shard(path, offsets))
    return shards
