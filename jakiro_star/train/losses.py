"""The Jakiro* training loss: the EAGLE loss on the gated mixture AND on every expert alone.

The original trained only the gated mixture ``residual + sum_e w_e * expert_e`` and then drafted from
the experts *without* their weights (``residual + expert_e``), an output no loss had ever seen.
Here each expert's own read-out gets the same loss as the mixture (feature SmoothL1 + soft
cross-entropy against the base model, `jakiro.train.losses.branch_loss`), so what the drafter
reads at inference is what was trained. The mixture term keeps the gate meaningful: at inference
it decides which expert's candidate comes first.

    step term = L(mix) + EXPERT_WEIGHT * sum_e L(expert_e)

Training-time rollout (``rollout_steps_train = K > 1``) follows one chain per expert
(`jakiro_star.train.unroll`): step j >= 2 of chain e reads expert e's own earlier predictions, as a child
proposed by expert e does at inference. Step j's term is the mean of its chains' terms, weighted
``rollout_decay ** (j - 1)`` and counted only where a path exists (p >= j - 1), as in the core's loss.
The base model's teacher distribution is computed once per batch and shared by every term.
"""

from __future__ import annotations

import torch

from jakiro.train.losses import Teacher, answer_start_weighted, branch_loss, noisy_inputs
from jakiro.train.unroll import valid_positions

from .unroll import expert_unroll

EXPERT_WEIGHT = 1.0  # each expert alone counts as much as the mixture


def star_loss(model, batch: dict[str, torch.Tensor], config, noise_generator: torch.Generator | None = None,
              head_weight: torch.Tensor | None = None, contrastive: bool | None = None,
              head_dtype: torch.dtype = torch.float32):
    """Total loss and parts for one padded batch: ``mix``, ``expert0``, ``expert1``, ... for step 1, and
    ``mix@j/chain{e}``, ``expert{i}@j/chain{e}`` for rollout step j of expert e's chain.

    Same signature as `jakiro.train.losses.draft_loss` (``contrastive`` is ignored: Jakiro* has no
    contrastive branch); ``model`` may be wrapped (DDP / DeepSpeed), then pass ``head_weight``."""
    features = batch["hidden_state"]
    head = model.head_weight if head_weight is None else head_weight
    outputs = expert_unroll(model, noisy_inputs(batch, config, noise_generator), batch["input_ids"][:, 1:],
                            getattr(config, "rollout_steps_train", 1))
    batch = answer_start_weighted(batch, config)
    mask = batch["loss_mask"] * batch["attention"]
    teacher = Teacher(features, mask, head)
    length = features.shape[1] - 1
    total, parts = None, {}
    for step, chains in enumerate(outputs, start=1):
        weight = mask[:, 1:] * valid_positions(length, step, features.device)
        step_total = None
        for chain, (mix, experts) in enumerate(chains):
            suffix = "" if step == 1 else f"@{step}/chain{chain}"
            read_outs = [("mix", 1.0, mix)] + [(f"expert{i}", EXPERT_WEIGHT, e) for i, e in enumerate(experts)]
            for name, share, prediction in read_outs:
                part = branch_loss(prediction, features, weight, 1, teacher, head, head_dtype)
                parts[name + suffix] = part
                term = share * (config.v_weight * part.regression + config.p_weight * part.cross_entropy)
                step_total = term if step_total is None else step_total + term
        step_total = step_total / len(chains) * config.rollout_decay ** (step - 1)
        total = step_total if total is None else total + step_total
    return total, parts
