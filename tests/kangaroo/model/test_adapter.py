"""The adapter: its forward, strict save/load, loading through the method registry, and one-line refusals
(a Jakiro head where a Kangaroo adapter is expected, another base model, a broken export, bad options)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from jakiro.errors import CheckpointError, ConfigError
from jakiro.model.ea_model import EaModel
from kangaroo.model.adapter import KangarooAdapter, new_adapter
from kangaroo.model.config import KangarooConfig
from kangaroo.model.drafter import KangarooDrafter
from tests.utils import hf_greedy, random_prompt


@pytest.fixture(scope="module")
def base(tiny_base):
    return tiny_base("llama", layers=3)


@pytest.fixture(scope="module")
def adapter_folder(base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter") / "kangaroo"
    adapter = new_adapter(base, seed=1, exit_layer=2, threshold=0.4, steps=3, draft_vocab_size=40)
    adapter.d2t.copy_(torch.arange(0, 80, 2))  # a non-trivial draft vocabulary survives the round trip
    adapter.refresh_head()
    adapter.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def jakiro_folder(base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("jakiro") / "jakiro"
    EaModel.from_base_model(base, seed=0, total_token=8, depth=2, top_k=2).ea_layer.save_pretrained(folder)
    return folder


def test_forward_is_attention_plus_two_norms(base):
    adapter = new_adapter(base, seed=0, exit_layer=1)
    assert sorted(name for name, _ in adapter.named_children()) == ["input_layernorm", "norm", "self_attn"]
    torch.testing.assert_close(adapter.norm.weight, base.model.norm.weight)  # starts as the plain early exit
    stream = torch.randn(1, 6, base.config.hidden_size)
    out = adapter(stream)
    by_hand = adapter.norm(stream + adapter.self_attn(adapter.input_layernorm(stream),
                                                      torch.arange(6)[None], None, None))
    torch.testing.assert_close(out, by_hand)
    # causal: a position never sees later ones
    changed = stream.clone()
    changed[0, 4:] += 1.0
    torch.testing.assert_close(adapter(changed)[:, :4], out[:, :4])
    assert adapter.logits(out).shape == (1, 6, base.config.vocab_size)


def test_save_load_round_trip(base, adapter_folder, tmp_path):
    config = json.loads((adapter_folder / "config.json").read_text())
    assert config["method"] == "kangaroo" and config["exit_layer"] == 2 and config["threshold"] == 0.4
    assert "lm_head" not in str(sorted(load_file(str(adapter_folder / "model.safetensors"))))  # head never saved
    loaded = KangarooAdapter.from_pretrained(adapter_folder, base_model=base)
    assert loaded.d2t.tolist() == list(range(0, 80, 2)) and loaded.head_weight.shape[0] == 40
    stream = torch.randn(1, 5, base.config.hidden_size)
    again = KangarooAdapter.from_pretrained(adapter_folder, base_model=base)
    torch.testing.assert_close(loaded(stream), again(stream))
    loaded.save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    state = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert state["self_attn.q_proj.weight"].dtype == torch.bfloat16 and state["d2t"].dtype == torch.int64


def test_ea_model_loads_the_adapter_by_its_method(base, adapter_folder):
    ea = EaModel.from_base_and_head(base, None, adapter_folder, threshold=0.0)
    assert isinstance(ea.ea_layer, KangarooAdapter) and isinstance(ea.drafter, KangarooDrafter)
    assert (ea.drafter.threshold, ea.drafter.steps, ea.drafter.exit_layer) == (0.0, 3, 2)  # override, saved, saved
    prompt = random_prompt(3, base.config.vocab_size)
    assert ea.eagenerate(prompt, max_new_tokens=16).tolist() == hf_greedy(base, prompt, 16).tolist()


def test_jakiro_head_where_an_adapter_is_expected_is_one_line(base, jakiro_folder):
    with pytest.raises(CheckpointError) as excinfo:
        KangarooAdapter.from_pretrained(jakiro_folder, base_model=base)
    message = str(excinfo.value)
    assert "jakiro head, not a Kangaroo adapter" in message and "\n" not in message
    with pytest.raises(ConfigError) as excinfo:
        EaModel.from_base_and_head(base, None, jakiro_folder, expect_method="kangaroo", role="kangaroo")
    assert "expects a kangaroo head" in str(excinfo.value) and "jakiro" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_adapter_for_another_base_is_refused(adapter_folder, tiny_base):
    other = tiny_base("llama", layers=3, hidden=32)
    with pytest.raises(CheckpointError, match="use a head trained for this base"):
        KangarooAdapter.from_pretrained(adapter_folder, base_model=other)
    shallow = tiny_base("llama", layers=2)  # same shapes, too few layers for exit layer 2
    with pytest.raises((CheckpointError, ConfigError)):
        KangarooAdapter.from_pretrained(adapter_folder, base_model=shallow)


@pytest.mark.parametrize("problem", ["missing-weights", "extra-key", "wrong-shape", "bad-json", "no-folder"])
def test_broken_exports_are_one_line_errors(base, adapter_folder, tmp_path, problem):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((adapter_folder / "config.json").read_text())
    state = load_file(str(adapter_folder / "model.safetensors"))
    if problem == "extra-key":
        state["layers.0.mlp.weight"] = torch.zeros(2)
    if problem == "wrong-shape":
        state["self_attn.q_proj.weight"] = torch.zeros(3, 3)
    if problem != "missing-weights":
        save_file(state, str(folder / "model.safetensors"))
    if problem == "bad-json":
        (folder / "config.json").write_text("{oops")
    target = tmp_path / "absent" if problem == "no-folder" else folder
    with pytest.raises(CheckpointError) as excinfo:
        KangarooAdapter.from_pretrained(target, base_model=base)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("options,fragment", [(dict(threshold=-0.1), "threshold"), (dict(steps=0), "steps"),
                                              (dict(exit_layer=0), "exit_layer"), (dict(exit_layer=3), "exit_layer"),
                                              (dict(draft_vocab_size=10 ** 6), "draft_vocab_size"),
                                              (dict(num_experts=2), "unknown Kangaroo option")])
def test_bad_config_options(base, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        KangarooConfig.from_base_config(base.config, **options)


def test_fresh_adapter_through_from_base_model(base):
    """`EaModel.from_base_model` builds a Kangaroo adapter from its own config class (the registry's)."""
    from jakiro.model.configs import DraftConfig

    ea = EaModel.from_base_model(base, seed=0, method="kangaroo", exit_layer=2, steps=3, threshold=0.0,
                                 tree_levels=1)
    assert isinstance(ea.ea_layer, KangarooAdapter) and ea.ea_layer.config.exit_layer == 2
    assert (ea.drafter.steps, ea.drafter.threshold, ea.drafter.tree_levels) == (3, 0.0, 1)
    prompt = random_prompt(4, base.config.vocab_size)
    assert ea.eagenerate(prompt, max_new_tokens=12).tolist() == hf_greedy(base, prompt, 12).tolist()
    with pytest.raises(ConfigError, match="new_adapter"):
        KangarooAdapter(DraftConfig.from_base_config(base.config))
