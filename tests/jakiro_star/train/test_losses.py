"""The Jakiro* loss is the EAGLE loss on the gated mixture plus the same loss on each expert alone, and it
trains the experts' own read-outs (which the mixture-only loss of the original never saw)."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.methods import new_head
from jakiro.model.configs import DraftConfig
from jakiro.train.config import TrainConfig
from jakiro.train.losses import answer_start_weighted, draft_loss
from jakiro_star.train.losses import EXPERT_WEIGHT, star_loss
from tests.train.test_losses import reference_part


def make_star_head():
    config = DraftConfig(hidden_size=16, vocab_size=24, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         num_experts=2, contrastive=False, expert_intermediate_size=20, method="jakiro_star")
    torch.manual_seed(0)
    model = new_head(config)
    model.embed_weight = torch.randn(24, 16)
    model.full_head_weight = torch.randn(24, 16)
    model.refresh_head()
    return model


def batch():
    torch.manual_seed(1)
    return {"hidden_state": torch.randn(2, 7, 16), "input_ids": torch.randint(24, (2, 7)),
            "loss_mask": torch.tensor([[0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0, 0]]).float(),
            "attention": torch.tensor([[1] * 7, [1] * 5 + [0, 0]]).float()}


def test_star_loss_matches_formula():
    model, data = make_star_head(), batch()
    total, parts = star_loss(model, data, TrainConfig(noise=0.0))
    features, mask = data["hidden_state"], data["loss_mask"] * data["attention"]
    mix, experts = model(features[:, :-1], data["input_ids"][:, 1:], branches="both")
    expected = 0.0
    for weight, prediction in ((1.0, mix), (EXPERT_WEIGHT, experts[0]), (EXPERT_WEIGHT, experts[1])):
        v, p = reference_part(prediction, features[:, 1:], mask[:, 1:], model.head_weight)
        expected = expected + weight * (1.0 * v + 0.1 * p)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    assert set(parts) == {"mix", "expert0", "expert1"}
    v1, p1 = reference_part(experts[1], features[:, 1:], mask[:, 1:], model.head_weight)
    torch.testing.assert_close(parts["expert1"].cross_entropy, p1, rtol=1e-5, atol=1e-6)
    # the mixture part is exactly the core's loss of the head's default (mix) read-out
    core_total, _ = draft_loss(model, data, TrainConfig(noise=0.0))
    torch.testing.assert_close(parts["mix"].regression * 1.0 + parts["mix"].cross_entropy * 0.1, core_total)


def test_every_expert_gets_its_own_gradient():
    """With the mixture-only loss an expert's gradient is scaled by its gate weight; here each expert also
    learns as a predictor alone, so its gradient differs from the mixture-only one."""
    model, data = make_star_head(), batch()
    star_loss(model, data, TrainConfig(noise=0.0))[0].backward()
    star = model.layers[0].mlp_moe.experts[0].dense_4h_to_h.weight.grad.clone()
    model.zero_grad()
    draft_loss(model, data, TrainConfig(noise=0.0))[0].backward()
    mixture_only = model.layers[0].mlp_moe.experts[0].dense_4h_to_h.weight.grad
    assert star.abs().sum() > 0 and not torch.allclose(star, mixture_only)


def test_rollout_is_refused():
    with pytest.raises(ConfigError, match="rollout_steps_train = 1"):
        star_loss(make_star_head(), batch(), TrainConfig(noise=0.0, rollout_steps_train=2))


def test_answer_start_weighting_reaches_every_expert_term():
    model, data = make_star_head(), batch()
    cfg = TrainConfig(noise=0.0, answer_start_weight=3.0, answer_start_tokens=2)
    total, parts = star_loss(model, data, cfg)
    reweighted = dict(data, loss_mask=answer_start_weighted(data, cfg)["loss_mask"])
    expected, expected_parts = star_loss(model, reweighted, TrainConfig(noise=0.0))
    torch.testing.assert_close(total, expected)
    for name in ("mix", "expert0", "expert1"):
        torch.testing.assert_close(parts[name].cross_entropy, expected_parts[name].cross_entropy)
    assert not torch.allclose(total, star_loss(model, data, TrainConfig(noise=0.0))[0])
