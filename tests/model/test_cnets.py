"""The draft head: forward invariants and checkpoints (round trip, strict refusal with one-line errors)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from jakiro.errors import CheckpointError
from jakiro.model.cnets import JakiroDraftModel
from jakiro.model.ea_model import EaModel
from jakiro.model.kv_cache import PreallocatedLayer
from tests.utils import build_base, random_prompt


def head_for(base, seed=0, **options) -> JakiroDraftModel:
    return EaModel.from_base_model(base, seed=seed, total_token=12, depth=3, top_k=3, **options).ea_layer


def test_forward_cache_and_last_only_agree(tiny_base):
    """Chunked forwards through the draft cache equal one causal forward; last_only gives the last row."""
    base = tiny_base("llama")
    head = head_for(base)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 9, 64, generator=gen)
    ids = torch.randint(0, 96, (1, 9), generator=gen)
    with torch.no_grad():
        full_mix, full_con = head(feats, ids, branches="both")
        cache = PreallocatedLayer(16)
        parts = [head(feats[:, a:b], ids[:, a:b], cache=cache) for a, b in ((0, 4), (4, 5), (5, 9))]
        last = head(feats, ids, branches="contrastive", last_only=True)
    torch.testing.assert_close(torch.cat(parts, 1), full_mix, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last, full_con[:, -1:], atol=1e-5, rtol=1e-4)
    assert torch.equal(head(feats, ids), full_mix)
    assert cache.length == 9


def test_untrained_head_echoes_features(tiny_base):
    """`init_weights` starts fc near identity on the feature half: an untrained head roughly echoes f_t."""
    head = head_for(tiny_base("llama"))
    feats = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = head(feats, torch.tensor([[1, 2, 3, 4, 5]]))
    cosine = torch.nn.functional.cosine_similarity(out, feats, dim=-1)
    assert (cosine > 0.9).all()


def test_draft_vocab_maps_to_target_ids(tiny_base):
    base = tiny_base("llama")
    head = head_for(base, draft_vocab_size=10)
    head.d2t = torch.tensor([50, 3, 7, 90, 11, 12, 40, 41, 0, 95])
    head.refresh_head()
    assert head.draft_vocab_size == 10
    hidden = torch.randn(2, 64)
    torch.testing.assert_close(head.logits(hidden), hidden @ base.lm_head.weight[head.d2t].T)
    assert head.to_target_ids(torch.tensor([0, 3, 9])).tolist() == [50, 90, 95]


@pytest.mark.parametrize("options", [dict(), dict(num_experts=1, fc_bias=False, draft_vocab_size=40),
                                     dict(num_experts=3, expert_intermediate_size=32)],
                         ids=["jakiro", "eagle2-draftvocab-nobias", "3experts"])
def test_checkpoint_round_trip(tiny_base, tmp_path, options):
    base = tiny_base("qwen2")
    ea = EaModel.from_base_model(base, seed=3, total_token=20, depth=3, top_k=4, **options)
    head = ea.ea_layer
    if head.d2t is not None:
        head.d2t = torch.randperm(96, generator=torch.Generator().manual_seed(0))[:40]
        head.refresh_head()
    head.save_pretrained(tmp_path / "head")
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["config.json", "model.safetensors"]
    saved = load_file(str(tmp_path / "head" / "model.safetensors"))
    assert not any("embed" in k or "head" in k for k in saved)  # base weights are never saved
    loaded = JakiroDraftModel.from_pretrained(tmp_path / "head", base)
    assert loaded.config == head.config
    for (name, a), (_, b) in zip(sorted(head.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
    again = EaModel(base, loaded.eval(), total_token=20, depth=3, top_k=4)
    prompt = random_prompt(1, 96)
    assert again.eagenerate(prompt, max_new_tokens=16).tolist() == ea.eagenerate(prompt, max_new_tokens=16).tolist()
    assert again.last_stats.accept_lengths == ea.last_stats.accept_lengths
    outs = []
    for model in (ea, again):
        torch.manual_seed(9)
        outs.append(model.eagenerate(prompt, temperature=1.0, max_new_tokens=16).tolist())
    assert outs[0] == outs[1]


def test_half_precision_export_loads(tiny_base, tmp_path):
    base = tiny_base("llama")
    head = head_for(base)
    head.save_pretrained(tmp_path, dtype=torch.float16)
    assert all(v.dtype == torch.float16 for v in load_file(str(tmp_path / "model.safetensors")).values())
    loaded = JakiroDraftModel.from_pretrained(tmp_path, base)
    torch.testing.assert_close(loaded.fc.weight, head.fc.weight, atol=1e-3, rtol=1e-3)


def save_tiny_base(base, folder):
    """A base-model folder as `load_base_model` expects it: weights, config and a (word-level) tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(base.config.vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="w0").save_pretrained(folder)


def test_ea_model_from_pretrained(tiny_base, tmp_path):
    base = tiny_base("llama")
    ea = EaModel.from_base_model(base, seed=4, total_token=16, depth=3, top_k=4)
    save_tiny_base(base, tmp_path / "base")
    ea.ea_layer.save_pretrained(tmp_path / "head")
    loaded = EaModel.from_pretrained(tmp_path / "base", tmp_path / "head", total_token=16, depth=3, top_k=4)
    assert loaded.get_tokenizer() is not None and not loaded.ea_layer.training
    prompt = random_prompt(2, 96)
    assert loaded.eagenerate(prompt, max_new_tokens=12).tolist() == ea.eagenerate(prompt, max_new_tokens=12).tolist()


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_refuses_head_for_another_base(tiny_base, tmp_path):
    head = head_for(tiny_base("llama"))
    head.save_pretrained(tmp_path)
    wider = build_base("llama", hidden=32)
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(tmp_path, wider)
    one_line_error(excinfo, "hidden size 64", "32")
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(tmp_path, build_base("llama", vocab=80))
    one_line_error(excinfo, "vocab 96", "80")
    with pytest.raises(CheckpointError) as excinfo:  # same shapes, another architecture
        JakiroDraftModel.from_pretrained(tmp_path, tiny_base("qwen2"))
    one_line_error(excinfo, "differs")
    with pytest.raises(CheckpointError):  # same family, another depth
        JakiroDraftModel.from_pretrained(tmp_path, build_base("llama", layers=3))
    with pytest.raises(CheckpointError):
        head_for(tiny_base("llama")).bind_base(wider)


def test_refuses_missing_or_broken_checkpoints(tiny_base, tmp_path):
    base = tiny_base("llama")
    head = head_for(base)
    folder = tmp_path / "head"

    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "not found")
    folder.mkdir()
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "config.json")

    head.save_pretrained(folder)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "unreadable")
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        JakiroDraftModel.from_pretrained(folder, base)
    weights.unlink()
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "model.safetensors")

    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file({**state, "layers.0.extra.weight": torch.zeros(2)}, str(weights))
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "unexpected", "layers.0.extra.weight")
    save_file({k: v for k, v in state.items() if k != "fc.bias"}, str(weights))
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "missing", "fc.bias")
    bad_shape = dict(state)
    bad_shape["layers.0.mlp_moe.gate.weight"] = torch.zeros(3, 64)
    save_file(bad_shape, str(weights))
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "layers.0.mlp_moe.gate.weight")

    save_file(state, str(weights))
    config = json.loads((folder / "config.json").read_text())
    for edit, fragment in ((dict(num_experts=1, contrastive=False), "missing"),  # keys of another head type
                           (dict(expert_intermediate_size=32), "does not match")):  # same keys, other shapes
        (folder / "config.json").write_text(json.dumps({**config, **edit}))
        with pytest.raises(CheckpointError) as excinfo:
            JakiroDraftModel.from_pretrained(folder, base)
        one_line_error(excinfo, fragment)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "JSON")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(CheckpointError) as excinfo:
        JakiroDraftModel.from_pretrained(folder, base)
    one_line_error(excinfo, "lacks")
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError):
        JakiroDraftModel.from_pretrained(folder, base)
    (folder / "config.json").write_text(json.dumps(config))
    assert JakiroDraftModel.from_pretrained(folder, base) is not None  # the original files still load
