"""Training configuration: the draft architecture plus optimisation hyperparameters, from one JSON file.

File layout: ``{"draft": {DraftConfig options}, "train": {TrainConfig fields}}``. Command-line
overrides are applied on top; the resolved configuration is saved with every checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import ConfigError


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 9e-5
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 2000
    grad_clip_value: float = 0.5
    v_weight: float = 1.0          # SmoothL1 on features
    p_weight: float = 0.1          # soft cross-entropy against the base model's next-token distribution
    contrastive_weight: float = 0.5  # the contrastive (two-ahead) branch's share of both losses
    noise: float = 0.2             # uniform noise amplitude on input features: U(-noise/2, noise/2)
    max_len: int = 2048
    holdout_fraction: float = 0.05
    eval_sequences: int = 32       # held-out conversations used for the rollout metric
    eval_starts: int = 16          # rollout start positions per held-out conversation (0: every position)
    rollout_steps: int = 5         # held-out chain metric: draft steps per start (acc_per_step has this length)
    rollout_steps_train: int = 1   # training-time rollout K: steps 2..K read the head's own predicted features
    rollout_decay: float = 0.8     # loss weight of rollout step j: rollout_decay ** (j - 1)
    answer_start_weight: float = 1.0  # training loss weight of an answer's first token (1: every token alike)
    answer_start_tokens: int = 64     # ... falling linearly to 1 at this answer index
    seed: int = 0
    num_workers: int = 0


@dataclass
class RunConfig:
    draft: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> dict:
        return {"draft": dict(self.draft), "train": asdict(self.train)}


def load_run_config(path: str | Path | None, overrides: dict) -> RunConfig:
    """Read a config file (or defaults) and apply non-None overrides (train fields or draft options)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"training config {str(path)!r} not found: pass one of jakiro/train/configs/*.json")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON (line {err.lineno}): fix the file") from None
    unknown = set(data) - {"draft", "train", "comment"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; expected 'draft' and 'train'")
    train_fields = {f.name for f in fields(TrainConfig)}
    train_values = dict(data.get("train", {}))
    bad = set(train_values) - train_fields
    if bad:
        raise ConfigError(f"{path}: unknown train option(s) {sorted(bad)}")
    draft = dict(data.get("draft", {}))
    for key, value in overrides.items():
        if value is None:
            continue
        if key in train_fields:
            train_values[key] = value
        else:
            draft[key] = value
    if "betas" in train_values:
        train_values["betas"] = _betas(train_values["betas"], path)
    train = TrainConfig(**train_values)
    check_train_values(train, {key for key, value in overrides.items() if value is not None and key in train_fields},
                       path)
    return RunConfig(draft=draft, train=train)


# What each training option may be, checked when the configuration is loaded: before any model is loaded or
# any file written (torch would otherwise fail late, after run_config.json exists, or train nothing).
# (type, test, what the test requires); options not listed here are checked by their own code.
_RULES: dict[str, tuple[type, Callable[[float], bool], str]] = {
    "epochs": (int, lambda v: v >= 1, "an integer >= 1 (0 epochs would export an untrained head)"),
    "lr": (float, lambda v: v > 0, "a number > 0"),
    "batch_size": (int, lambda v: v >= 1, "an integer >= 1"),
    "grad_accum": (int, lambda v: v >= 1, "an integer >= 1"),
    "weight_decay": (float, lambda v: v >= 0, "a number >= 0"),
    "warmup_steps": (int, lambda v: v >= 0, "an integer >= 0"),
    "grad_clip_value": (float, lambda v: v > 0, "a number > 0"),
    "v_weight": (float, lambda v: v >= 0, "a number >= 0"),
    "p_weight": (float, lambda v: v >= 0, "a number >= 0"),
    "contrastive_weight": (float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "noise": (float, lambda v: v >= 0, "a number >= 0"),
    "answer_start_weight": (float, lambda v: v >= 1, "a number >= 1 (1: no extra weight)"),
    "answer_start_tokens": (int, lambda v: v >= 1, "an integer >= 1"),
    "max_len": (int, lambda v: v >= 2, "an integer >= 2"),
    "holdout_fraction": (float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "eval_sequences": (int, lambda v: v >= 1, "an integer >= 1"),
    "eval_starts": (int, lambda v: v >= 0, "an integer >= 0"),
    "seed": (int, lambda v: v >= 0, "an integer >= 0"),
    "num_workers": (int, lambda v: v >= 0, "an integer >= 0"),
}


def _option_name(name: str, from_command_line: set[str], path: str | Path | None) -> str:
    if name in from_command_line:
        return "--" + name.replace("_", "-")
    return f"train.{name}" + (f" in {path}" if path is not None else "")


def _betas(value, path: str | Path | None) -> tuple:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(value)
    raise ConfigError(f"{_option_name('betas', set(), path)} must be two numbers in [0, 1), got {value!r}")


def check_train_values(train: TrainConfig, from_command_line: set[str] = frozenset(),
                       path: str | Path | None = None) -> None:
    """Refuse a training option that cannot work, naming it as the user set it (a flag or a config entry)."""
    for name, (kind, test, requirement) in _RULES.items():
        if not hasattr(train, name):
            continue
        value = getattr(train, name)
        number = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
        if not number or not math.isfinite(value) or not test(value):
            raise ConfigError(f"{_option_name(name, from_command_line, path)} must be {requirement}, got {value!r}")
    betas = train.betas
    if not all(not isinstance(b, bool) and isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"{_option_name('betas', from_command_line, path)} must be two numbers in [0, 1), "
                          f"got {list(betas)!r}")
    if train.v_weight == 0 and train.p_weight == 0:
        raise ConfigError(f"{_option_name('v_weight', from_command_line, path)} and p_weight are both 0: "
                          "nothing would be trained; set at least one above 0")
