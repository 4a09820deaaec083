"""The Jakiro* head: NeoX experts with a 2-logit gate, per-expert read-outs consistent with the gated mixture,
strict save/load, and a config that refuses what Jakiro* is not."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from jakiro.errors import ConfigError
from jakiro.model.configs import DraftConfig
from jakiro.model.ea_model import EaModel
from jakiro_star.model.head import JakiroStarHead
from tests.utils import decouple_experts


def star_head(base, **options) -> JakiroStarHead:
    ea = EaModel.from_base_model(base, seed=3, method="jakiro_star", **options)
    decouple_experts(ea)
    return ea.ea_layer


def test_shapes_and_defaults(tiny_base):
    base = tiny_base("llama")
    head = star_head(base)
    config = head.config
    assert config.method == "jakiro_star" and config.num_experts == 2 and not config.contrastive
    assert config.expert_intermediate_size == base.config.intermediate_size  # the original's expert width
    block = head.layers[0].mlp_moe
    assert block.gate.weight.shape == (2, config.hidden_size)
    assert block.experts[0].dense_h_to_4h.weight.shape == (base.config.intermediate_size, config.hidden_size)
    assert block.experts[0].dense_h_to_4h.bias is not None
    narrow = star_head(base, expert_intermediate_size=24)
    assert narrow.layers[0].mlp_moe.experts[1].dense_4h_to_h.weight.shape == (config.hidden_size, 24)


def test_read_outs_agree(tiny_base):
    """mix = sum_e softmax(gate)_e * expert_e (weights sum to one, so the residual passes through once);
    expert_step gives the same per-expert features as forward(branches='experts')."""
    base = tiny_base("llama")
    head = star_head(base)
    torch.manual_seed(0)
    features, ids = torch.randn(1, 7, base.config.hidden_size), torch.randint(base.config.vocab_size, (1, 7))
    with torch.no_grad():
        mix = head(features, ids)
        experts = head(features, ids, branches="experts")
        both = head(features, ids, branches="both")
        step = head.expert_step(features, ids)
    assert experts.shape == (2, 1, 7, base.config.hidden_size)
    weights = torch.softmax(step.gate_logits, -1)
    torch.testing.assert_close(mix, torch.einsum("ebsh,bse->bsh", experts, weights))
    torch.testing.assert_close(step.features, experts)
    torch.testing.assert_close(both[0], mix)
    torch.testing.assert_close(both[1], experts)
    assert not torch.allclose(experts[0], experts[1], atol=1e-3)  # decoupled experts really differ
    with pytest.raises(ValueError, match="'mix', 'experts', 'both' or 'dominant'"):
        head(features, ids, branches="contrastive")


def test_dominant_read_out_is_the_largest_gate_logits_expert(tiny_base):
    """The chain the held-out metrics follow: per position, the expert the drafter proposes from first."""
    base = tiny_base("llama")
    head = star_head(base)
    torch.manual_seed(1)
    features, ids = torch.randn(2, 9, base.config.hidden_size), torch.randint(base.config.vocab_size, (2, 9))
    with torch.no_grad():
        dominant = head(features, ids, branches="dominant")
        step = head.expert_step(features, ids)
    chosen = step.gate_logits.argmax(-1)
    assert 0 < int(chosen.sum()) < chosen.numel()  # both experts dominate somewhere, so the gather is exercised
    for b in range(2):
        for position in range(9):
            torch.testing.assert_close(dominant[b, position], step.features[chosen[b, position], b, position])
    assert head.chain_read_out == "dominant"


def test_save_load_roundtrip(tiny_base, tmp_path):
    base = tiny_base("llama")
    head = star_head(base)
    head.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert {"layers.0.mlp_moe.gate.weight", "layers.0.mlp_moe.experts.1.dense_4h_to_h.bias"} <= keys
    assert not any("embed" in k or "head_weight" in k for k in keys)
    loaded = JakiroStarHead.from_pretrained(tmp_path, base)
    for key, value in head.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


@pytest.mark.parametrize("options,fragment", [(dict(num_experts=1), "num_experts=1"),
                                              (dict(contrastive=True), "contrastive=True")])
def test_config_refuses_what_jakiro_star_is_not(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DraftConfig(hidden_size=8, vocab_size=10, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
                    method="jakiro_star", **{"num_experts": 2, "contrastive": False, **options})
