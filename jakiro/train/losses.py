"""The draft-head training loss: feature regression plus soft cross-entropy, per branch and rollout step.

Pairing (shapes [B, S]): draft position p reads ``(f_p, x_{p+1})``. The ``mix`` branch is trained to
output ``f_{p+1}`` (weight = loss mask of ``x_{p+1}``); the contrastive branch looks two ahead and is
trained on ``f_{p+2}`` (weight = loss mask of ``x_{p+2}``).

Soft cross-entropy, exactly: over the draft vocabulary D (the whole vocabulary without a reduced one),
the teacher is ``t = softmax(W_D f)`` (the base model's next-token distribution restricted to D and
renormalised; the mass outside D cannot be drafted, so it is not a target) and the student is
``softmax(W_D h)``; per position ``CE = -sum_d t_d log softmax(W_D h)_d = logsumexp(W_D h) - t . (W_D h)``.
The teacher is computed once per batch in float32 without gradient, for every position whose token
carries loss, and shared by both branches and all rollout steps (the contrastive branch's target
``f_{p+2}`` is the mix branch's target at p+1). The student's log-sum-exp, softmax and gradient
``softmax(W_D h) - t`` are formed by hand with few passes over the [rows, vocabulary] tensor. The student's
two head matmuls (forward and backward) run in ``head_dtype``: bf16 when training runs in bf16, as
autocast would do; softmax and log-sum-exp stay float32. Top-1 "correct" means the student's largest
logit is at the teacher's most likely draft token.

Rollout (``rollout_steps_train = K``, see `jakiro.train.unroll`): step j at position p predicts the same
target as step 1 at p, from its own previous prediction; its loss is weighted ``rollout_decay ** (j-1)``
and counts only positions that start a path (p >= j - 1). Both branches are supervised at every step:
the tree reads the contrastive branch at its last drafted level, i.e. from predicted features.
K = 1 is the original (EAGLE/Jakiro) recipe.

Answer-start weighting (``answer_start_weight = W > 1``, training only): a loss-bearing position at index i
of its answer (0 = the answer's first token) weighs ``1 + (W - 1) * max(0, 1 - i / answer_start_tokens)`` in
both losses instead of 1. Heads draft worst at the start of an answer (first-step top-1 0.40 in an answer's
first 32 tokens against 0.79 after 128, on SmolLM2-135M's own answers), the part short generations live in;
the weights put more of the loss there. Held-out metrics stay unweighted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .unroll import unroll, valid_positions


@dataclass
class BranchLoss:
    regression: torch.Tensor
    cross_entropy: torch.Tensor
    correct: torch.Tensor   # top-1 agreements with the teacher over the draft vocabulary (weighted positions)
    count: torch.Tensor     # weighted positions


class _SoftCrossEntropy(torch.autograd.Function):
    """Per row ``logsumexp(z) - t . z`` with ``z = x W^T``; backward ``(softmax(z) - t) W`` (t sums to 1).

    Written out by hand so the [rows, vocabulary] tensor is passed over as few times as possible (the
    output head is most of a training step): the softmax made for the log-sum-exp is kept for backward."""

    @staticmethod
    def forward(ctx, rows, weight, teacher, teacher_top, dtype):
        logits = (rows.to(dtype) @ weight.to(dtype).T).float()
        dot = torch.einsum("nv,nv->n", teacher, logits)
        top = logits.amax(-1)
        agree = logits.gather(1, teacher_top[:, None])[:, 0] >= top  # the teacher's top token is the student's
        probs = logits.sub_(top[:, None]).exp_()
        total = probs.sum(-1)
        probs.div_(total[:, None])
        loss = top + total.log() - dot
        ctx.save_for_backward(probs, teacher, weight)
        ctx.dtype, ctx.rows_dtype = dtype, rows.dtype
        ctx.mark_non_differentiable(agree)
        return loss, agree

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_agree):
        probs, teacher, weight = ctx.saved_tensors
        grad_logits = probs.sub_(teacher).mul_(grad_loss[:, None])
        grad_rows = (grad_logits.to(ctx.dtype) @ weight.to(ctx.dtype)).to(ctx.rows_dtype)
        return grad_rows, None, None, None, None


def soft_cross_entropy(rows: torch.Tensor, head_weight: torch.Tensor, teacher: torch.Tensor,
                       teacher_top: torch.Tensor | None = None,
                       dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row soft CE of ``rows`` [N,H] against teacher probabilities [N,V], and whether the student's top
    token is the teacher's ``teacher_top`` [N] (default: the teacher's argmax)."""
    if teacher_top is None:
        teacher_top = teacher.argmax(-1)
    return _SoftCrossEntropy.apply(rows, head_weight, teacher, teacher_top, dtype)


class Teacher:
    """The base model's distribution over the draft vocabulary at every loss-bearing position of a batch."""

    def __init__(self, features: torch.Tensor, weight: torch.Tensor, head_weight: torch.Tensor):
        batch, length, hidden = features.shape
        self.length = length
        flat = features.reshape(-1, hidden)
        rows = (weight.reshape(-1) > 0).nonzero().squeeze(1)
        with torch.no_grad():
            logits = flat[rows].float() @ head_weight.float().T
            self.probs = torch.softmax(logits, dim=-1)
            self.top = logits.argmax(-1)
        self.slot = torch.full((batch * length,), -1, dtype=torch.long, device=features.device)
        self.slot[rows] = torch.arange(len(rows), device=features.device)

    def rows(self, batch_index: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Teacher rows (indices into probs/top) of positions ``(b, position)``; each must carry loss."""
        return self.slot[batch_index * self.length + position]


def branch_loss(prediction: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, shift: int,
                teacher: Teacher, head_weight: torch.Tensor, head_dtype: torch.dtype = torch.float32) -> BranchLoss:
    """``prediction[:, p]`` [B,P,H] targets ``features[:, p + shift]`` with ``weight[:, p]`` [B,P].

    Masked SmoothL1 (mean over hidden units) and soft CE, each normalised by the weight sum (+1e-5)."""
    length = prediction.shape[1]
    target = features[:, shift:shift + length]
    denominator = weight.sum() + 1e-5
    regression = (F.smooth_l1_loss(prediction, target, reduction="none").mean(-1) * weight).sum() / denominator
    batch_index, position = (weight > 0).nonzero(as_tuple=True)
    row_weight = weight[batch_index, position]
    slots = teacher.rows(batch_index, position + shift)
    per_row, agree = soft_cross_entropy(prediction[batch_index, position], head_weight, teacher.probs[slots],
                                        teacher.top[slots], head_dtype)
    cross_entropy = (per_row * row_weight).sum() / denominator
    correct = (agree.float() * row_weight).sum()
    return BranchLoss(regression, cross_entropy, correct.detach(), row_weight.sum().detach())


def rollout_outputs(model, batch: dict[str, torch.Tensor], config, steps: int, contrastive: bool,
                    noise_generator: torch.Generator | None = None, read_out: str = "mix"):
    """The draft's outputs for ``steps`` rollout steps on a padded batch (noise on the real features only)."""
    return unroll(model, noisy_inputs(batch, config, noise_generator), batch["input_ids"][:, 1:], steps, contrastive,
                  read_out)


def noisy_inputs(batch: dict[str, torch.Tensor], config, noise_generator: torch.Generator | None = None) -> torch.Tensor:
    """The real features ``f_0..f_{S-2}`` a draft reads, with the training noise U(-noise/2, noise/2) added."""
    inputs = batch["hidden_state"][:, :-1]
    if config.noise > 0:
        noise = torch.rand(inputs.shape, generator=noise_generator, device="cpu").to(inputs.device, inputs.dtype)
        inputs = inputs + (noise - 0.5) * config.noise
    return inputs


def answer_index(loss_mask: torch.Tensor) -> torch.Tensor:
    """[B, S] index of every position inside its answer (a run of loss-bearing positions; 0 = its first), -1
    outside answers."""
    inside = loss_mask > 0
    positions = torch.arange(loss_mask.shape[-1], device=loss_mask.device).expand_as(loss_mask)
    last_outside = torch.where(inside, torch.full_like(positions, -1), positions).cummax(-1).values
    return torch.where(inside, positions - last_outside - 1, torch.full_like(positions, -1))


def answer_start_weighted(batch: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The batch with its loss mask scaled by the answer-start weights (the batch itself when they are off)."""
    weight = getattr(config, "answer_start_weight", 1.0)
    if weight == 1.0:
        return batch
    mask = batch["loss_mask"]
    ramp = (1.0 - answer_index(mask).float() / config.answer_start_tokens).clamp(min=0.0)
    return {**batch, "loss_mask": mask * (1.0 + (weight - 1.0) * ramp).to(mask.dtype)}


def loss_from_outputs(outputs, batch: dict[str, torch.Tensor], config, head: torch.Tensor,
                      head_dtype: torch.dtype = torch.float32):
    """Total loss and parts (``mix``/``contrastive`` for step 1, ``mix@j``/``contrastive@j`` after it)."""
    features, mask = batch["hidden_state"], batch["loss_mask"] * batch["attention"]
    teacher = Teacher(features, mask, head)
    length = features.shape[1] - 1
    total, parts = None, {}
    for step, (mix, right) in enumerate(outputs, start=1):
        valid = valid_positions(length, step, features.device)
        first = branch_loss(mix, features, mask[:, 1:] * valid, 1, teacher, head, head_dtype)
        term = config.v_weight * first.regression + config.p_weight * first.cross_entropy
        suffix = "" if step == 1 else f"@{step}"
        parts["mix" + suffix] = first
        if right is not None and features.shape[1] > 2:
            second = branch_loss(right[:, :-1], features, mask[:, 2:] * valid[:-1], 2, teacher, head, head_dtype)
            term = term + config.contrastive_weight * (config.v_weight * second.regression +
                                                       config.p_weight * second.cross_entropy)
            parts["contrastive" + suffix] = second
        total = term if total is None else total + config.rollout_decay ** (step - 1) * term
    return total, parts


def draft_loss(model, batch: dict[str, torch.Tensor], config, noise_generator: torch.Generator | None = None,
               head_weight: torch.Tensor | None = None, contrastive: bool | None = None,
               head_dtype: torch.dtype = torch.float32):
    """Total loss and per-branch parts for one padded batch (see the module docstring).

    ``model`` may be wrapped (DDP / DeepSpeed): then pass the head weight and the contrastive flag of
    the unwrapped head explicitly, so the forward still goes through the wrapper.
    """
    contrastive = model.config.contrastive if contrastive is None else contrastive
    head = model.head_weight if head_weight is None else head_weight
    outputs = rollout_outputs(model, batch, config, config.rollout_steps_train, contrastive, noise_generator)
    return loss_from_outputs(outputs, answer_start_weighted(batch, config), config, head, head_dtype)
