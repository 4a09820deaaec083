"""The training recipe of the EAGLE-style heads (Jakiro, EAGLE-2, Jakiro*) for the shared loop (`jakiro.train.loop`).

The head is built by the method registry from ``run.draft`` (`jakiro.methods.new_head`: the class of the
config's method), its loss is the method's ``training_loss`` (`jakiro.train.losses.draft_loss`, Jakiro*'s
`star_loss`), and the held-out metrics are the chain accuracy and simulated acceptance of
`jakiro.train.rollout.evaluate`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods import new_head, training_loss
from ..model.configs import DraftConfig
from .config import RunConfig
from .dataset import pick_draft_vocabulary
from .loop import TrainingRecipe
from .rollout import evaluate


class DraftHeadRecipe(TrainingRecipe):
    """Heads that read the base model's last feature and the next token (`JakiroDraftModel` and subclasses)."""

    def __init__(self, run: RunConfig):
        super().__init__(run)
        if run.draft.get("num_experts") == 1 and "contrastive" not in run.draft:
            run.draft["contrastive"] = False  # one expert is the EAGLE-2 head: no contrastive branch
        self.loss_fn = None

    def build(self, base_model: nn.Module, data_folder: str) -> nn.Module:
        config = DraftConfig.from_base_config(base_model.config, **self.run.draft)
        torch.manual_seed(self.run.train.seed)
        model = new_head(config, base_model)  # the class of config.method (jakiro.methods)
        pick_draft_vocabulary(model, data_folder)
        self.loss_fn = training_loss(config.method)  # Jakiro / EAGLE-2: draft_loss; Jakiro*: its own
        return model

    def batch_loss(self, model, raw, batch, noise, head_dtype):
        loss, parts = self.loss_fn(model, batch, self.run.train, noise, raw.head_weight, raw.config.contrastive,
                                   head_dtype)
        return loss, parts["mix"].correct, parts["mix"].count

    def evaluate(self, raw, holdout, device):
        return evaluate(raw, holdout, self.run.train, device)

    def record(self) -> dict:
        return {"rollout_steps_train": self.run.train.rollout_steps_train}
