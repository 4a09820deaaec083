"""The method registry: a head's own config.json picks its class and drafter; a head of the wrong method is
refused with one line naming both methods."""

from __future__ import annotations

import json

import pytest

from jakiro.errors import CheckpointError, ConfigError
from jakiro.methods import METHOD_SPECS, head_class, head_method, load_head, make_drafter, method_spec, training_loss
from jakiro.model.cnets import JakiroDraftModel
from jakiro.model.ea_model import EaModel
from jakiro.model.tree_drafter import TreeDrafter
from jakiro_star.model.drafter import JakiroStarDrafter
from jakiro_star.model.head import JakiroStarHead
from tests.utils import hf_greedy, random_prompt

HEADS = {"jakiro": {}, "eagle2": {"num_experts": 1}, "jakiro_star": {"method": "jakiro_star"}}


@pytest.fixture(scope="module")
def head_folders(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    base = tiny_base("llama")
    folders = {}
    for method, options in HEADS.items():
        ea = EaModel.from_base_model(base, seed=1, total_token=12, depth=3, top_k=3, **options)
        ea.ea_layer.save_pretrained(root / method)
        folders[method] = root / method
    return folders


def test_registry_names_every_implemented_method():
    assert {"jakiro", "eagle2", "jakiro_star"} <= set(METHOD_SPECS)
    assert head_class("jakiro") is head_class("eagle2") is JakiroDraftModel
    assert head_class("jakiro_star") is JakiroStarHead
    assert training_loss("jakiro").__name__ == "draft_loss" and training_loss("jakiro_star").__name__ == "star_loss"
    with pytest.raises(ConfigError, match="unknown method 'medusa'"):
        method_spec("medusa")


@pytest.mark.parametrize("method", sorted(HEADS))
def test_loading_picks_class_and_drafter_from_the_head_config(tiny_base, head_folders, method):
    base = tiny_base("llama")
    folder = head_folders[method]
    assert head_method(folder) == method
    head = load_head(folder, base)
    assert type(head) is head_class(method) and head.config.method == method
    ea = EaModel.from_base_and_head(base, None, folder, total_token=12, depth=3, top_k=3)
    assert ea.method == method
    assert isinstance(ea.drafter, JakiroStarDrafter if method == "jakiro_star" else TreeDrafter)
    assert type(make_drafter(ea)) is type(ea.drafter)
    prompt = random_prompt(2, base.config.vocab_size)
    assert ea.eagenerate(prompt, max_new_tokens=12).tolist() == hf_greedy(base, prompt, 12).tolist()


@pytest.mark.parametrize("found,expected", [("jakiro", "jakiro_star"), ("jakiro_star", "jakiro"),
                                            ("eagle2", "jakiro_star"), ("jakiro_star", "eagle2")])
def test_head_of_the_other_method_is_a_one_line_error(tiny_base, head_folders, found, expected):
    base = tiny_base("llama")
    with pytest.raises(ConfigError) as info:
        EaModel.from_base_and_head(base, None, head_folders[found], expect_method=expected, role="jakiro_star.gen")
    message = str(info.value)
    assert f"expects a {expected} head" in message and f"is a {found} head" in message and "\n" not in message
    with pytest.raises(ConfigError, match=f"is a {found} head"):
        load_head(head_folders[found], base, expect_method=expected)


def test_head_classes_refuse_folders_of_another_method(tiny_base, head_folders):
    base = tiny_base("llama")
    with pytest.raises(CheckpointError) as info:
        JakiroDraftModel.from_pretrained(head_folders["jakiro_star"], base)
    assert "jakiro_star head" in str(info.value) and "jakiro/eagle2" in str(info.value)
    with pytest.raises(CheckpointError) as info:
        JakiroStarHead.from_pretrained(head_folders["jakiro"], base)
    assert "holds a jakiro head" in str(info.value) and "jakiro_star" in str(info.value)


def test_head_config_without_method_or_with_unimplemented_method(tiny_base, head_folders, tmp_path):
    config = json.loads((head_folders["jakiro"] / "config.json").read_text())
    folder = tmp_path / "no-method"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "method"}))
    with pytest.raises(CheckpointError, match="names no 'method'"):
        head_method(folder)
    with pytest.raises(CheckpointError, match="no config.json"):
        head_method(tmp_path)


def test_drafter_options_go_to_the_method_that_takes_them(tiny_base):
    base = tiny_base("llama")
    with pytest.raises(ConfigError, match="for a jakiro_star head"):
        EaModel.from_base_model(base, seed=0, method="jakiro_star", cepd=False)
    with pytest.raises(ConfigError, match="for a jakiro head"):
        EaModel.from_base_model(base, seed=0, tree="dynamic")
    with pytest.raises(ConfigError, match="unknown tree 'wide'"):
        EaModel.from_base_model(base, seed=0, method="jakiro_star", tree="wide")
    ea = EaModel.from_base_model(base, seed=0, method="jakiro_star", tree="dynamic", total_token=20, depth=3, top_k=4)
    assert ea.drafter.tree == "dynamic" and ea.drafter_options == {"tree": "dynamic"}
