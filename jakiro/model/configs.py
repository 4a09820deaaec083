"""The draft head's configuration: architecture, the base model it belongs to, and its method."""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..version import __version__

METHODS = ("jakiro", "eagle2", "jakiro_star", "kangaroo")


def base_fingerprint(base_config) -> str:
    """A short hash of the base model's architecture; a head refuses a base with another fingerprint."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "intermediate_size")
    blob = json.dumps({k: getattr(base_config, k, None) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_values(base_config) -> dict:
    """A fresh head's shapes and base-model identity, derived from the base model's `transformers` config."""
    heads = base_config.num_attention_heads
    rope = getattr(base_config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(base_config, "rope_theta", 10000.0)) if isinstance(rope, dict) else 10000.0
    return dict(
        hidden_size=base_config.hidden_size,
        vocab_size=base_config.vocab_size,
        num_attention_heads=heads,
        num_key_value_heads=getattr(base_config, "num_key_value_heads", None) or heads,
        head_dim=getattr(base_config, "head_dim", None) or base_config.hidden_size // heads,
        rope_theta=float(theta),
        rms_norm_eps=getattr(base_config, "rms_norm_eps", 1e-6),
        base_model=str(getattr(base_config, "name_or_path", "")),
        base_fingerprint=base_fingerprint(base_config),
    )


def read_config_json(folder: str | Path, owner: str = "draft head", written_by: str = "save_pretrained",
                     noun: str = "head", kind: str | None = None) -> tuple[Path, Any]:
    """A head folder's ``config.json`` and its parsed content; a missing file, invalid JSON or (with ``kind``,
    what the file should be) anything but a JSON object is a one-line `CheckpointError`."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{owner} {str(folder)!r} has no config.json: pass a folder written by {written_by}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}): re-export the {noun}") from None
    if kind is not None and not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object: it is not a {kind}")
    return path, data


@dataclass
class HeadConfig:
    """What every head's configuration starts with: the shapes it takes from its base model (`base_values`
    gives them with the base's identity); and its ``config.json``."""

    hidden_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6

    def save(self, folder: str | Path) -> None:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, data: dict, path: Path, kind: str):
        """The configuration in a ``config.json`` object: every field without a default must be there; keys
        this version does not know are ignored."""
        missing = [f.name for f in fields(cls)
                   if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise CheckpointError(f"{path} lacks {missing}: it is not a complete {kind}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class DraftConfig(HeadConfig):
    """Everything needed to rebuild a draft head; written as ``config.json`` beside its weights."""

    num_experts: int = 2
    expert_intermediate_size: int | None = None
    contrastive: bool = True
    fc_bias: bool = True
    draft_vocab_size: int | None = None
    method: str = "jakiro"
    base_model: str = ""
    base_fingerprint: str = ""
    library_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.expert_intermediate_size is None:
            self.expert_intermediate_size = self.hidden_size
        if self.num_experts < 1:
            raise ConfigError(f"num_experts must be >= 1, got {self.num_experts}")
        if self.contrastive and self.num_experts < 2:
            raise ConfigError("the contrastive branch needs num_experts >= 2: pass contrastive=False for 1 expert")
        if self.draft_vocab_size is not None and not 0 < self.draft_vocab_size <= self.vocab_size:
            raise ConfigError(f"draft_vocab_size must be in 1..{self.vocab_size}, got {self.draft_vocab_size}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.method == "jakiro_star" and (self.num_experts < 2 or self.contrastive):
            raise ConfigError("a jakiro_star head drafts from >= 2 decoupled experts and has no contrastive branch, "
                              f"got num_experts={self.num_experts}, contrastive={self.contrastive}: "
                              "use num_experts >= 2 and contrastive false (jakiro_star/train/configs/)")

    @classmethod
    def from_base_config(cls, base_config, **options) -> "DraftConfig":
        """Derive the head's shapes from a `transformers` config; ``options`` override the defaults."""
        values = base_values(base_config)
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"unknown draft option(s) {sorted(unknown)}: known are {sorted(known)}")
        values.update(options)
        if values.get("num_experts") == 1 and "contrastive" not in options:
            values["contrastive"] = False
        if options.get("method") == "jakiro_star":
            # Jakiro*: no contrastive branch; GPT-NeoX experts as wide as the base model's MLP (the original's)
            if "contrastive" not in options:
                values["contrastive"] = False
            if "expert_intermediate_size" not in options:
                values["expert_intermediate_size"] = getattr(base_config, "intermediate_size", None)
        if "method" not in options:
            values["method"] = "jakiro" if values.get("contrastive", True) else "eagle2"
        return cls(**values)

    @classmethod
    def load(cls, folder: str | Path) -> "DraftConfig":
        path, data = read_config_json(folder, kind="jakiro draft config")
        return cls.from_json(data, path, "jakiro draft config")
