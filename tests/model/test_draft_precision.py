"""Drafting with bf16 weights: a converted copy of the head (bf16 weight panels, or the whole head in bf16) that
follows the head's weights, drafts close to the fp32 head, and leaves generation lossless (greedy token-identical
to `generate`, whatever the draft dtype)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jakiro.errors import ConfigError
from jakiro.model.draft_precision import DraftCopy, native_bf16_cpu, resolve_draft_dtype
from jakiro.model.ea_model import EaModel
from jakiro.model import draft_precision, panel_gemm
from tests.utils import build_base, hf_greedy, make_oracle, random_prompt


def make_ea(**options) -> EaModel:
    return EaModel.from_base_model(build_base("llama", logit_scale=8.0), seed=1, total_token=12, depth=3, top_k=3,
                                   **options)


def test_draft_dtype_choice():
    ea = make_ea(draft_dtype="float32")
    head = ea.ea_layer
    assert resolve_draft_dtype(head, "float32") == torch.float32
    assert resolve_draft_dtype(head, torch.bfloat16) == torch.bfloat16
    cheaper = panel_gemm.load() is not None or native_bf16_cpu()
    assert resolve_draft_dtype(head, "auto") == (torch.bfloat16 if cheaper else torch.float32)
    assert ea.drafter.draft_dtype == torch.float32 and ea.drafter.model is head
    with pytest.raises(ConfigError, match="draft_dtype 'int4'"):
        resolve_draft_dtype(head, "int4")
    with pytest.raises(ConfigError, match="draft_dtype"):
        make_ea(draft_dtype="int4")


@pytest.mark.parametrize("way", ["panels", "whole-bf16"])
@torch.no_grad()
def test_copy_has_bf16_weights_shares_the_base_and_keeps_rope_in_fp32(way, monkeypatch):
    if way == "whole-bf16":  # a machine where the panel kernel cannot be built
        monkeypatch.setattr(draft_precision, "_panel_kernel", lambda: None)
    elif panel_gemm.load() is None:
        pytest.skip(f"LOUD: the panel kernel could not be built here ({panel_gemm.load_error()})")
    head = make_ea(draft_dtype="float32").ea_layer
    draft = DraftCopy(head, torch.bfloat16)
    assert (draft.kernel is not None) == (way == "panels")
    clone = draft.get()
    assert clone is not head and clone.embed_weight is head.embed_weight, "the base embedding is shared, not copied"
    assert clone.layers[0].self_attn.inv_freq.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in head.parameters()), "the head itself is untouched"
    q = clone.layers[0].self_attn.q_proj
    rounded = head.layers[0].self_attn.q_proj.weight.bfloat16()
    if draft.kernel is not None:  # fp32 activations, bf16 weight panels behind every product
        assert draft.activation_dtype == torch.float32 and "forward" in q.__dict__
        x = torch.randn(1, 5, head.config.hidden_size)
        torch.testing.assert_close(q(x), F.linear(x, rounded.float()), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(clone.logits(x[0]), x[0] @ head.head_weight.bfloat16().float().T,
                                   atol=1e-4, rtol=1e-4)
    else:  # the whole head in bf16 (oneDNN)
        assert draft.activation_dtype == torch.bfloat16
        assert all(p.dtype == torch.bfloat16 for p in clone.parameters()) and clone.head_weight.dtype == torch.bfloat16
        x = torch.randn(1, 5, head.config.hidden_size, dtype=torch.bfloat16)
        assert torch.equal(q(x), F.linear(x, q.weight)), "packed products equal F.linear"
        assert torch.equal(clone.logits(x[0]), x[0] @ clone.head_weight.T)
        assert torch.equal(q.weight, rounded)


@torch.no_grad()
def test_copy_follows_changes_of_the_head():
    head = make_ea(draft_dtype="float32").ea_layer
    copy = DraftCopy(head, torch.bfloat16)
    first = copy.get()
    assert copy.get() is first, "unchanged weights: the same copy"
    head.fc.weight.mul_(0.5)
    second = copy.get()
    assert second is not first
    x = torch.randn(3, 2 * head.config.hidden_size)
    torch.testing.assert_close(second.fc(x).float(), F.linear(x, head.fc.weight.bfloat16().float(), head.fc.bias),
                               atol=0.05, rtol=0.02)
    assert DraftCopy(head, torch.float32).get() is head


@torch.no_grad()
def test_bf16_drafts_are_close_to_fp32_drafts():
    fp32, bf16 = make_ea(draft_dtype="float32"), make_ea(draft_dtype="bfloat16")
    prompt = random_prompt(2, fp32.base_model.config.vocab_size, low=5)
    trees = []
    for ea in (fp32, bf16):
        with torch.no_grad():
            feats = ea.base_model.model(prompt).last_hidden_state
        ea.drafter.start(prompt, feats, capacity=64)
        trees.append(ea.drafter.propose(7))
    assert bf16.drafter.pending_features.dtype == bf16.drafter._copy.activation_dtype
    assert trees[0].tokens[:4].tolist() == trees[1].tokens[:4].tolist(), "the best candidates agree"


@pytest.mark.parametrize("oracle", [False, True])
def test_bf16_drafting_stays_lossless(oracle):
    base = build_base("llama", logit_scale=15.0, context_mix=0.3) if oracle else build_base("qwen2")
    ea = EaModel.from_base_model(base, seed=0, total_token=10, depth=4, top_k=3, draft_dtype="bfloat16")
    if oracle:
        make_oracle(ea, sharpness=2.0)  # after construction: the bf16 copy must pick the new weights up
    for seed in range(3):
        prompt = random_prompt(seed, base.config.vocab_size, low=3)
        out = ea.eagenerate(prompt, max_new_tokens=20)
        assert torch.equal(out, hf_greedy(base, prompt, 20))
        if oracle:
            assert ea.last_stats.mean_accept_length > 2.0, "the hand-set head drafts through its bf16 copy"
