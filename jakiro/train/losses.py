"""The draft-head training loss: feature regression plus soft cross-entropy, for one or two branches.

Pairing (shapes [B, S]): draft position t reads (f_t, x_{t+1}). The ``mix`` branch is trained to
output f_{t+1} (weight = loss mask of x_{t+1}); the contrastive branch looks two ahead and is
trained on f_{t+2} (weight = loss mask of x_{t+2}). Soft cross-entropy compares the draft's
distribution ``softmax(head(output))`` with the base model's ``softmax(head(target))`` over the
draft vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BranchLoss:
    regression: torch.Tensor
    cross_entropy: torch.Tensor
    correct: torch.Tensor   # top-1 agreements with the base model (over weighted positions)
    count: torch.Tensor     # weighted positions


def branch_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                head_weight: torch.Tensor) -> BranchLoss:
    """Masked SmoothL1 (mean over hidden units) and soft CE, normalised by the mask sum (+1e-5)."""
    selected = weight > 0
    denominator = weight.sum() + 1e-5
    regression = (F.smooth_l1_loss(prediction, target, reduction="none").mean(-1) * weight).sum() / denominator
    pred_rows, target_rows, row_weight = prediction[selected], target[selected], weight[selected]
    with torch.no_grad():
        teacher_logits = target_rows.float() @ head_weight.float().T
        teacher = torch.softmax(teacher_logits, dim=-1)
    student = torch.log_softmax((pred_rows @ head_weight.T).float(), dim=-1)
    cross_entropy = -((teacher * student).sum(-1) * row_weight).sum() / denominator
    correct = ((student.argmax(-1) == teacher_logits.argmax(-1)).float() * row_weight).sum()
    return BranchLoss(regression, cross_entropy, correct.detach(), row_weight.sum().detach())


def draft_loss(model, batch: dict[str, torch.Tensor], config, noise_generator: torch.Generator | None = None,
               head_weight: torch.Tensor | None = None, contrastive: bool | None = None):
    """Total loss and per-branch parts for one padded batch (see the module docstring for the pairing).

    ``model`` may be wrapped (DDP / DeepSpeed): then pass the head weight and the contrastive flag of
    the unwrapped head explicitly, so the forward still goes through the wrapper.
    """
    features, ids, mask = batch["hidden_state"], batch["input_ids"], batch["loss_mask"] * batch["attention"]
    inputs = features[:, :-1]
    if config.noise > 0:
        noise = torch.rand(inputs.shape, generator=noise_generator, device="cpu").to(inputs.device, inputs.dtype)
        inputs = inputs + (noise - 0.5) * config.noise
    contrastive = model.config.contrastive if contrastive is None else contrastive
    out = model(inputs, ids[:, 1:], branches="both" if contrastive else "mix")
    mix, right = out if contrastive else (out, None)
    head = model.head_weight if head_weight is None else head_weight
    first = branch_loss(mix, features[:, 1:], mask[:, 1:], head)
    total = config.v_weight * first.regression + config.p_weight * first.cross_entropy
    parts = {"mix": first}
    if right is not None and features.shape[1] > 2:
        second = branch_loss(right[:, :-1], features[:, 2:], mask[:, 2:], head)
        total = total + config.contrastive_weight * (config.v_weight * second.regression +
                                                     config.p_weight * second.cross_entropy)
        parts["contrastive"] = second
    return total, parts
