"""ExpertMixture: the mix and contrastive read-outs written out by hand."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.moe import ExpertMixture


def test_mix_and_contrastive_formulas():
    torch.manual_seed(0)
    moe = ExpertMixture(hidden_size=8, intermediate_size=6, num_experts=2, contrastive=True)
    x = torch.randn(2, 5, 8)
    e0, e1 = (torch.nn.functional.silu(e.gate_proj(x)) * e.up_proj(x) for e in moe.experts)
    e0, e1 = moe.experts[0].down_proj(e0), moe.experts[1].down_proj(e1)
    g = moe.gate(x)
    w = torch.softmax(g[..., :2], -1)
    v = torch.softmax(g[..., 2:], -1)
    mix = w[..., :1] * e0 + w[..., 1:] * e1
    dominant0 = g[..., 2:3] >= g[..., 3:4]
    contrastive = torch.where(dominant0, v[..., :1] * e0 - v[..., 1:] * e1, v[..., 1:] * e1 - v[..., :1] * e0)
    assert dominant0.any() and (~dominant0).any()
    torch.testing.assert_close(moe(x), mix)
    torch.testing.assert_close(moe(x, "contrastive"), contrastive)
    both = moe(x, "both")
    torch.testing.assert_close(both[0], mix)
    torch.testing.assert_close(both[1], contrastive)
    assert moe.gate.weight.shape == (4, 8)


def test_single_expert_is_a_plain_mlp():
    torch.manual_seed(0)
    moe = ExpertMixture(hidden_size=8, intermediate_size=6, num_experts=1, contrastive=False)
    x = torch.randn(3, 8)
    assert moe.gate is None
    torch.testing.assert_close(moe(x), moe.experts[0](x))
    with pytest.raises(ValueError, match="contrastive"):
        moe(x, "contrastive")


def test_three_experts_with_contrastive_pair():
    torch.manual_seed(0)
    moe = ExpertMixture(hidden_size=8, intermediate_size=4, num_experts=3, contrastive=True)
    x = torch.randn(4, 8)
    outs = torch.stack([e(x) for e in moe.experts])
    g = moe.gate(x)
    assert g.shape == (4, 5)
    w = torch.softmax(g[:, :3], -1)
    torch.testing.assert_close(moe(x), (w.T[..., None] * outs).sum(0))
    v = torch.softmax(g[:, 3:], -1)
    sign = torch.where(g[:, 3:4] >= g[:, 4:5], 1.0, -1.0)
    torch.testing.assert_close(moe(x, "contrastive"), sign * (v[:, :1] * outs[0] - v[:, 1:] * outs[1]))
