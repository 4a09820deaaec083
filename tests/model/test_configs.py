"""DraftConfig: derived shapes, option validation and the base fingerprint."""

from __future__ import annotations

import pytest

from jakiro.errors import CheckpointError, ConfigError
from jakiro.model.configs import DraftConfig, base_fingerprint
from tests.utils import build_base


def test_from_base_config(tiny_base):
    llama = tiny_base("llama")
    config = DraftConfig.from_base_config(llama.config)
    assert (config.hidden_size, config.vocab_size, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim) == (64, 96, 4, 2, 16)
    assert config.expert_intermediate_size == 64 and config.num_experts == 2 and config.contrastive
    assert config.method == "jakiro" and config.rope_theta == llama.config.rope_parameters["rope_theta"]
    eagle = DraftConfig.from_base_config(llama.config, num_experts=1)
    assert not eagle.contrastive and eagle.method == "eagle2"
    assert base_fingerprint(llama.config) == config.base_fingerprint
    assert base_fingerprint(tiny_base("qwen2").config) != config.base_fingerprint
    assert base_fingerprint(build_base("llama", layers=3).config) != config.base_fingerprint


@pytest.mark.parametrize("options,fragment", [
    (dict(num_experts=0), "num_experts"),
    (dict(num_experts=1, contrastive=True), "contrastive"),
    (dict(draft_vocab_size=0), "draft_vocab_size"),
    (dict(draft_vocab_size=97), "draft_vocab_size"),
    (dict(method="medusa"), "method"),
    (dict(experts=2), "unknown draft option"),
])
def test_invalid_options(tiny_base, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DraftConfig.from_base_config(tiny_base("llama").config, **options)


def test_save_load(tiny_base, tmp_path):
    config = DraftConfig.from_base_config(tiny_base("llama").config, draft_vocab_size=32, fc_bias=False)
    config.save(tmp_path)
    assert DraftConfig.load(tmp_path) == config
    with pytest.raises(CheckpointError, match="config.json"):
        DraftConfig.load(tmp_path / "nowhere")
