"""The training loss equals the method's formulas, computed independently on a hand-made batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jakiro.model.cnets import JakiroDraftModel, init_weights
from jakiro.model.configs import DraftConfig
from jakiro.train.config import TrainConfig
from jakiro.train.losses import draft_loss


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
