"""The Kangaroo adapter's configuration: its shapes, the base model it belongs to, and its drafting defaults.

Written as ``config.json`` beside the adapter's weights. ``method`` is always ``"kangaroo"``: the method
registry (`jakiro.methods`) reads it to pick this adapter and its drafter. ``exit_layer`` is fixed by
training (the adapter reads the residual stream after that many decoder layers); ``threshold`` and
``steps`` are the drafting defaults a user may override per `EaModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from jakiro.errors import CheckpointError, ConfigError
from jakiro.model.configs import HeadConfig, base_values, read_config_json
from jakiro.version import __version__

METHOD = "kangaroo"
DEFAULT_EXIT_LAYER = 2
DEFAULT_THRESHOLD = 0.6
DEFAULT_STEPS = 6


def check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a probability in [0, 1] (0 = never stop early), got {threshold!r}")
    return float(threshold)


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1 (the most tokens drafted per round), got {steps!r}")
    return steps


@dataclass
class KangarooConfig(HeadConfig):
    """Everything needed to rebuild an adapter and run it on its base model (shapes and ``config.json``:
    `HeadConfig`)."""

    exit_layer: int = DEFAULT_EXIT_LAYER
    threshold: float = DEFAULT_THRESHOLD
    steps: int = DEFAULT_STEPS
    draft_vocab_size: int | None = None
    method: str = METHOD
    base_model: str = ""
    base_fingerprint: str = ""
    base_num_layers: int | None = None
    library_version: str = __version__
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method != METHOD:
            raise ConfigError(f"a Kangaroo adapter config must have method 'kangaroo', got {self.method!r}")
        if isinstance(self.exit_layer, bool) or not isinstance(self.exit_layer, int) or self.exit_layer < 1:
            raise ConfigError(f"exit_layer must be an integer >= 1, got {self.exit_layer!r}")
        if self.base_num_layers is not None and self.exit_layer >= self.base_num_layers:
            raise ConfigError(f"exit_layer must be below the base model's {self.base_num_layers} layers, "
                              f"got {self.exit_layer}")
        self.threshold = check_threshold(self.threshold)
        check_steps(self.steps)
        if self.draft_vocab_size is not None and not 0 < self.draft_vocab_size <= self.vocab_size:
            raise ConfigError(f"draft_vocab_size must be in 1..{self.vocab_size}, got {self.draft_vocab_size}")

    @classmethod
    def from_base_config(cls, base_config, **options) -> "KangarooConfig":
        """Shapes from a `transformers` config (derived as for every draft head); ``options`` set the rest."""
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"unknown Kangaroo option(s) {sorted(unknown)}: known are {sorted(known)}")
        values = base_values(base_config)
        values["base_num_layers"] = int(base_config.num_hidden_layers)
        values.update(options)
        return cls(**values)

    @classmethod
    def load(cls, folder: str | Path) -> "KangarooConfig":
        """Read ``config.json``; a head of another method (a Jakiro head, say) is refused in one line."""
        path, data = read_config_json(folder, "Kangaroo adapter", "kangaroo.train.main or save_pretrained", "adapter",
                                      kind="Kangaroo adapter config")
        method = data.get("method")
        if method != METHOD:
            raise CheckpointError(f"{str(folder)!r} holds a {method or 'method-less'} head, not a Kangaroo adapter: "
                                  "pass a folder written by kangaroo.train.main (config.json method 'kangaroo')")
        try:
            return cls.from_json(data, path, "Kangaroo adapter config")
        except ConfigError as err:
            raise CheckpointError(f"{path}: {err}") from None
