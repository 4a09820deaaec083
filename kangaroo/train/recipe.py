"""The Kangaroo adapter's training recipe for the shared loop (`jakiro.train.loop`): what differs from a draft head.

The adapter reads the exit layer's hidden states (data made with ``--save-layers L``), is built with the base
model's final norm copied in (`new_adapter`), trains on the soft cross-entropy against the base model's
next-token distribution (`losses.adapter_loss`) and is scored on held-out data by expected acceptance,
top-1 and replayed greedy rounds (`metrics.evaluate_adapter`).
"""

from __future__ import annotations

from torch import nn

from jakiro.errors import ConfigError
from jakiro.train.config import RunConfig
from jakiro.train.dataset import pick_draft_vocabulary
from jakiro.train.loop import TrainingRecipe

from ..model.adapter import new_adapter
from ..model.config import DEFAULT_EXIT_LAYER
from .losses import adapter_loss, layer_key
from .metrics import evaluate_adapter


def check_data_has_layer(manifest: dict, exit_layer: int, folder: str) -> None:
    saved = manifest.get("save_layers") or []
    if exit_layer not in saved:
        raise ConfigError(f"data in {folder} holds no {layer_key(exit_layer)} (saved layers: {saved or 'none'}): "
                          f"regenerate it with jakiro.ge_data.allocation --save-layers {exit_layer}, or pick "
                          "--exit-layer among the saved ones")


class AdapterRecipe(TrainingRecipe):
    """One attention block over the shallow stream after ``exit_layer`` decoder layers (default 2)."""

    noun = "adapter"
    measures_tau = False  # a chain drafter: `kangaroo.evaluation.sweep` measures its rounds

    def __init__(self, run: RunConfig):
        super().__init__(run)
        if run.train.rollout_steps_train != 1:
            raise ConfigError("Kangaroo adapters train without training-time rollout: use rollout_steps_train = 1 "
                              "(drop --rollout-steps)")
        self.exit_layer = run.draft.setdefault("exit_layer", DEFAULT_EXIT_LAYER)
        self.extra_keys = (layer_key(self.exit_layer),)

    def check_data(self, manifest: dict, folder: str) -> None:
        check_data_has_layer(manifest, self.exit_layer, folder)

    def build(self, base_model: nn.Module, data_folder: str) -> nn.Module:
        """A fresh adapter (final norm copied from the base), its draft vocabulary from the data's token counts."""
        adapter = new_adapter(base_model, seed=self.run.train.seed, **self.run.draft).float()
        pick_draft_vocabulary(adapter, data_folder)
        return adapter

    def batch_loss(self, model, raw, batch, noise, head_dtype):
        parts = adapter_loss(model, batch, self.exit_layer, raw.head_weight)
        return parts.loss, parts.correct, parts.count

    def evaluate(self, raw, holdout, device):
        return evaluate_adapter(raw, holdout, self.exit_layer, raw.config.threshold, raw.config.steps, device)

    def record(self) -> dict:
        return {"exit_layer": self.exit_layer}
