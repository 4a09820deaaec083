"""The Jakiro* training loss: the EAGLE loss on the gated mixture AND on every expert alone.

The original trained only the gated mixture ``residual + sum_e w_e * expert_e`` and then drafted from
the experts *without* their weights (``residual + expert_e``), an output no loss had ever seen.
Here each expert's own read-out gets the same loss as the mixture (feature SmoothL1 + soft
cross-entropy against the base model, `jakiro.train.losses.loss_from_outputs`), so what the drafter
reads at inference is what was trained. The mixture term keeps the gate meaningful: at inference
it decides which expert's candidate comes first.

    total = L(mix) + EXPERT_WEIGHT * sum_e L(expert_e)

Training-time rollout (``rollout_steps_train > 1``) is not defined for Jakiro*: a drafted child
continues from *its own expert's* feature, so a rollout would branch per expert; it is refused.
"""

from __future__ import annotations

import torch

from jakiro.errors import ConfigError
from jakiro.train.losses import answer_start_weighted, loss_from_outputs

EXPERT_WEIGHT = 1.0  # each expert alone counts as much as the mixture


def star_loss(model, batch: dict[str, torch.Tensor], config, noise_generator: torch.Generator | None = None,
              head_weight: torch.Tensor | None = None, contrastive: bool | None = None,
              head_dtype: torch.dtype = torch.float32):
    """Total loss and parts (``mix``, ``expert0``, ``expert1``, ...) for one padded batch.

    Same signature as `jakiro.train.losses.draft_loss` (``contrastive`` is ignored: Jakiro* has no
    contrastive branch); ``model`` may be wrapped (DDP / DeepSpeed), then pass ``head_weight``."""
    if getattr(config, "rollout_steps_train", 1) != 1:
        raise ConfigError("Jakiro* heads train without training-time rollout: use rollout_steps_train = 1 "
                          "(drop --rollout-steps)")
    features, ids = batch["hidden_state"], batch["input_ids"]
    inputs = features[:, :-1]
    if config.noise > 0:
        noise = torch.rand(inputs.shape, generator=noise_generator, device="cpu").to(inputs.device, inputs.dtype)
        inputs = inputs + (noise - 0.5) * config.noise
    head = model.head_weight if head_weight is None else head_weight
    mix, experts = model(inputs, ids[:, 1:], branches="both")
    batch = answer_start_weighted(batch, config)
    total, parts = loss_from_outputs([(mix, None)], batch, config, head, head_dtype)
    for index, expert in enumerate(experts):
        term, expert_parts = loss_from_outputs([(expert, None)], batch, config, head, head_dtype)
        total = total + EXPERT_WEIGHT * term
        parts[f"expert{index}"] = expert_parts["mix"]
    return total, parts
