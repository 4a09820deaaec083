"""The Kangaroo adapter's training loss: soft cross-entropy against the base model's next-token distribution.

Pairing (shapes [B, T]): the adapter reads the shallow stream ``s_t`` (``hidden_state_layer{l}``) and
predicts the final feature at the same position, so ``lm_head(adapter(s)_t)`` and the teacher
``lm_head(f_t)`` (``hidden_state``) are both distributions of token t+1; position t carries the loss
mask of x_{t+1} (a drafted token is an assistant token). Over the draft vocabulary D (all tokens
without a reduced one) the teacher is ``softmax(W_D f_t)``; the loss is normalised by the mask sum
plus a small epsilon (the original divides by the bare sum and traps the NaN of an empty batch).
No feature regression and no input noise: the original recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPSILON = 1e-5


@dataclass
class AdapterLoss:
    loss: torch.Tensor      # soft cross-entropy, mean over weighted positions
    correct: torch.Tensor   # top-1 agreements with the teacher over the draft vocabulary (weighted)
    count: torch.Tensor     # weighted positions


def layer_key(exit_layer: int) -> str:
    """The data key holding the residual stream after ``exit_layer`` decoder layers (`jakiro.ge_data`)."""
    return f"hidden_state_layer{exit_layer}"


def adapter_loss(model, batch: dict[str, torch.Tensor], exit_layer: int,
                 head_weight: torch.Tensor | None = None) -> AdapterLoss:
    """Loss of one padded batch; ``model`` may be wrapped (DDP, DeepSpeed): then pass the head weight."""
    shallow, features = batch[layer_key(exit_layer)], batch["hidden_state"]
    weight = (batch["loss_mask"] * batch["attention"])[:, 1:]
    head = model.head_weight if head_weight is None else head_weight
    predicted = model(shallow)[:, :-1]
    selected = weight > 0
    rows, row_weight = predicted[selected], weight[selected]
    with torch.no_grad():
        teacher_logits = features[:, :-1][selected].float() @ head.float().T
        teacher = torch.softmax(teacher_logits, dim=-1)
    student = torch.log_softmax((rows @ head.T).float(), dim=-1)
    denominator = row_weight.sum() + EPSILON
    loss = -((teacher * student).sum(-1) * row_weight).sum() / denominator
    correct = ((student.argmax(-1) == teacher_logits.argmax(-1)).float() * row_weight).sum()
    return AdapterLoss(loss, correct.detach(), row_weight.sum().detach())
