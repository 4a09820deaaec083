"""The training loss equals the method's formulas, computed independently on a hand-made batch (rollout included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jakiro.model.cnets import JakiroDraftModel, init_weights
from jakiro.model.configs import DraftConfig
from jakiro.train.config import TrainConfig
from jakiro.train.losses import answer_index, answer_start_weighted, draft_loss, soft_cross_entropy


def make_head(contrastive: bool) -> JakiroDraftModel:
    config = DraftConfig(hidden_size=16, vocab_size=24, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         num_experts=2 if contrastive else 1, contrastive=contrastive)
    torch.manual_seed(0)
    model = JakiroDraftModel(config)
    init_weights(model)
    model.embed_weight = torch.randn(24, 16)
    model.full_head_weight = torch.randn(24, 16)
    model.refresh_head()
    return model


def reference_part(pred, target, weight, head):
    """Masked SmoothL1 (mean over hidden) + masked soft CE, each over sum(weight) + 1e-5."""
    denominator = weight.sum() + 1e-5
    smooth = torch.where((pred - target).abs() < 1, 0.5 * (pred - target) ** 2, (pred - target).abs() - 0.5)
    regression = (smooth.mean(-1) * weight).sum() / denominator
    teacher = torch.softmax(target @ head.T, -1)
    ce = -((teacher * torch.log_softmax(pred @ head.T, -1)).sum(-1) * weight).sum() / denominator
    return regression, ce


def test_jakiro_loss_matches_formula():
    model = make_head(contrastive=True)
    cfg = TrainConfig(noise=0.0)
    torch.manual_seed(1)
    batch = {"hidden_state": torch.randn(2, 7, 16), "input_ids": torch.randint(24, (2, 7)),
             "loss_mask": torch.tensor([[0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0, 0]]).float(),
             "attention": torch.tensor([[1] * 7, [1] * 5 + [0, 0]]).float()}
    total, parts = draft_loss(model, batch, cfg)
    features, mask = batch["hidden_state"], batch["loss_mask"] * batch["attention"]
    mix, right = model(features[:, :-1], batch["input_ids"][:, 1:], branches="both")
    v1, p1 = reference_part(mix, features[:, 1:], mask[:, 1:], model.head_weight)
    v2, p2 = reference_part(right[:, :-1], features[:, 2:], mask[:, 2:], model.head_weight)
    expected = 1.0 * (v1 + 0.5 * v2) + 0.1 * (p1 + 0.5 * p2)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["mix"].regression, v1)
    torch.testing.assert_close(parts["contrastive"].cross_entropy, p2)


def test_eagle2_loss_has_one_branch():
    model = make_head(contrastive=False)
    batch = {"hidden_state": torch.randn(1, 5, 16), "input_ids": torch.randint(24, (1, 5)),
             "loss_mask": torch.ones(1, 5), "attention": torch.ones(1, 5)}
    total, parts = draft_loss(model, batch, TrainConfig(noise=0.0))
    assert set(parts) == {"mix"}
    out = model(batch["hidden_state"][:, :-1], batch["input_ids"][:, 1:])
    v, p = reference_part(out, batch["hidden_state"][:, 1:], torch.ones(1, 4), model.head_weight)
    torch.testing.assert_close(total, v + 0.1 * p, rtol=1e-5, atol=1e-6)


def test_noise_changes_inputs_only():
    model = make_head(contrastive=True)
    batch = {"hidden_state": torch.randn(1, 6, 16), "input_ids": torch.randint(24, (1, 6)),
             "loss_mask": torch.ones(1, 6), "attention": torch.ones(1, 6)}
    clean, _ = draft_loss(model, batch, TrainConfig(noise=0.0))
    noisy, _ = draft_loss(model, batch, TrainConfig(noise=0.2), torch.Generator().manual_seed(0))
    assert not torch.isclose(clean, noisy)
    assert F.mse_loss(batch["hidden_state"], batch["hidden_state"]) == 0  # the batch itself is untouched


def slow_rollout(model, features, ids, steps, contrastive):
    """Per path start s: the real prefix f_0..f_s, then the path's own predictions, one causal forward per step.

    Returns {(step, b, p): (mix, contrastive)} at position p = s + step - 1 (no batched masks, no cache)."""
    out = {}
    batch, length = ids.shape
    for b in range(batch):
        for start in range(length):
            inputs = features[b, :start + 1]
            for step in range(1, steps + 1):
                position = start + step - 1
                if position >= length:
                    break
                result = model(inputs[None], ids[b, :position + 1][None], branches="both" if contrastive else "mix")
                mix, right = result if contrastive else (result, None)
                out[step, b, position] = (mix[0, -1], None if right is None else right[0, -1])
                inputs = torch.cat((inputs, mix[0, -1:]))
    return out


def reference_rollout_loss(model, batch, config, steps):
    """The documented definition, position by position: step j at p predicts f_{p+1} (contrastive f_{p+2})."""
    features, ids = batch["hidden_state"], batch["input_ids"]
    mask = batch["loss_mask"] * batch["attention"]
    contrastive = model.config.contrastive
    outs = slow_rollout(model, features[:, :-1], ids[:, 1:], steps, contrastive)
    head = model.head_weight
    total = 0.0
    width = features.shape[1] - 1
    for step in range(1, steps + 1):
        term = 0.0
        for branch, shift, share in (("mix", 1, 1.0), ("contrastive", 2, config.contrastive_weight)):
            if branch == "contrastive" and not contrastive:
                continue
            preds, targets, weights = [], [], []
            for (j, b, p), (mix, right) in outs.items():
                if j == step and p - step + 1 >= 0 and p + shift <= width:
                    preds.append(mix if branch == "mix" else right)
                    targets.append(features[b, p + shift])
                    weights.append(mask[b, p + shift])
            v, ce = reference_part(torch.stack(preds), torch.stack(targets), torch.stack(weights), head)
            term = term + share * (config.v_weight * v + config.p_weight * ce)
        total = total + config.rollout_decay ** (step - 1) * term
    return total


def rollout_batch():
    torch.manual_seed(5)
    return {"hidden_state": torch.randn(2, 8, 16), "input_ids": torch.randint(24, (2, 8)),
            "loss_mask": torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0, 1, 0]]).float(),
            "attention": torch.tensor([[1] * 8, [1] * 6 + [0, 0]]).float()}


@pytest.mark.parametrize("contrastive", [True, False])
def test_rollout_loss_and_gradients_match_a_slow_per_position_implementation(contrastive):
    model = make_head(contrastive)
    cfg = TrainConfig(noise=0.0, rollout_steps_train=3, rollout_decay=0.7)
    batch = rollout_batch()
    total, parts = draft_loss(model, batch, cfg)
    fast = torch.autograd.grad(total, list(model.parameters()))
    expected = reference_rollout_loss(model, batch, cfg, 3)
    slow = torch.autograd.grad(expected, list(model.parameters()))
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert {"mix", "mix@2", "mix@3"} <= set(parts)
    assert ("contrastive@3" in parts) == contrastive


def test_one_rollout_step_is_the_original_loss():
    model = make_head(True)
    batch = rollout_batch()
    one, _ = draft_loss(model, batch, TrainConfig(noise=0.0, rollout_steps_train=1))
    torch.testing.assert_close(one, reference_rollout_loss(model, batch, TrainConfig(noise=0.0), 1), rtol=1e-5, atol=1e-6)
    three, _ = draft_loss(model, batch, TrainConfig(noise=0.0, rollout_steps_train=3))
    assert three > one


def test_fused_soft_cross_entropy_gradient_equals_autograd():
    torch.manual_seed(6)
    rows, head = torch.randn(7, 16, requires_grad=True), torch.randn(24, 16)
    with torch.no_grad():  # rows 0..3: the teacher's top token is the student's; rows 4..6: random
        teacher = torch.softmax(torch.cat((2 * rows[:4] @ head.T, torch.randn(3, 24))), -1)
    loss, agree = soft_cross_entropy(rows, head, teacher)
    (loss * torch.arange(7.0)).sum().backward()
    fused = rows.grad.clone()
    rows.grad = None
    expected = -(teacher * torch.log_softmax(rows @ head.T, -1)).sum(-1)
    (expected * torch.arange(7.0)).sum().backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(fused, rows.grad)
    assert torch.equal(agree, (rows @ head.T).argmax(-1) == teacher.argmax(-1))
    assert agree[:4].all()


def test_bf16_head_matmuls_stay_close():
    model = make_head(True)
    batch = rollout_batch()
    full, _ = draft_loss(model, batch, TrainConfig(noise=0.0, rollout_steps_train=2))
    half, _ = draft_loss(model, batch, TrainConfig(noise=0.0, rollout_steps_train=2), head_dtype=torch.bfloat16)
    torch.testing.assert_close(half, full, rtol=2e-2, atol=2e-2)


def test_answer_index_restarts_at_every_answer_turn():
    mask = torch.tensor([0, 1, 1, 1, 0, 0, 1, 1.0])
    assert answer_index(mask).tolist() == [-1, 0, 1, 2, -1, -1, 0, 1]
    batch = torch.tensor([[1, 1, 0, 1.0], [0, 0, 1, 1.0]])
    assert answer_index(batch).tolist() == [[0, 1, -1, 0], [-1, -1, 0, 1]]


def test_answer_start_weights_ramp_linearly_to_one():
    batch = rollout_batch()
    cfg = TrainConfig(answer_start_weight=3.0, answer_start_tokens=4)
    weighted = answer_start_weighted(batch, cfg)["loss_mask"]
    # row 0: answer of 6 tokens from position 2; row 1: answers at 1..4 and 6
    expected = torch.tensor([[0, 0, 3, 2.5, 2, 1.5, 1, 1], [0, 3, 2.5, 2, 1.5, 0, 3, 0]])
    torch.testing.assert_close(weighted, expected)
    assert answer_start_weighted(batch, TrainConfig()) is batch  # off by default: the papers' loss


@pytest.mark.parametrize("contrastive", [True, False])
def test_answer_start_weighting_is_a_weighted_mean_of_the_same_terms(contrastive):
    model = make_head(contrastive)
    batch = rollout_batch()
    cfg = TrainConfig(noise=0.0, rollout_steps_train=2, answer_start_weight=4.0, answer_start_tokens=3)
    total, parts = draft_loss(model, batch, cfg)
    plain = TrainConfig(noise=0.0, rollout_steps_train=2)
    reweighted = dict(batch, loss_mask=answer_start_weighted(batch, cfg)["loss_mask"])
    expected, _ = draft_loss(model, reweighted, plain)
    torch.testing.assert_close(total, expected)
    unweighted, _ = draft_loss(model, batch, plain)
    assert not torch.allclose(total, unweighted)
    assert parts["mix"].count == reweighted["loss_mask"][:, 1:].mul(batch["attention"][:, 1:]).sum()
