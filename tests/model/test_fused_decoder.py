"""The fused decoder layers: the same hidden states and cache entries as the model's own forward, up to rounding.

The fused call reimplements a LLaMA layer's glue (norms, rotary embeddings, SwiGLU, cache writes), so it
is checked against the module forward on every architecture it claims (biases included), with and without
a tree mask, and it must refuse every model whose layer it would compute differently."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from jakiro.model import panel_gemm
from jakiro.model.fast_verify import shared_packed_linears
from jakiro.model.fused_decoder import FUSED_SWITCH, shared_fused_decoder, unsupported_reason
from jakiro.model.target import FUSED_PREFILL_ROWS, TargetRunner
from jakiro.model.tree import DraftTree
from tests.utils import build_base, random_prompt

pytestmark = pytest.mark.skipif(panel_gemm.load() is None, reason=f"LOUD: the kernel did not build ({panel_gemm.load_error()})")


def module_and_fused(base, tokens, positions, allowed):
    """Hidden states and layer-0 keys/values after the same forward through both paths, on fresh caches."""
    prompt = random_prompt(7, base.config.vocab_size, low=5, high=5)
    results = []
    for fused in (False, True):
        runner = TargetRunner(base)
        runner.reset(64)
        runner.extend(prompt)
        start = runner.length
        if fused:
            hidden = shared_fused_decoder(base).forward(tokens, positions + start, allowed, runner.cache)
        else:
            mask = None if allowed is None else runner._additive(allowed)
            hidden = runner._forward(tokens, positions + start, mask)[0]
        layer = runner.cache.layers[0]
        assert runner.cache.layer_lengths() == [start + tokens.shape[1]] * len(runner.cache.layers)
        results.append((hidden, layer.keys[:, :, :layer.length], layer.values[:, :, :layer.length]))
    return results


def tree_inputs(prefix: int):
    tokens = torch.tensor([[5, 9, 11, 3, 7]])
    positions = torch.tensor([[0, 1, 1, 2, 2]])
    parents = [-1, 0, 0, 1, 1]
    allowed = torch.zeros(5, prefix + 5, dtype=torch.bool)
    allowed[:, :prefix] = True
    for node, parent in enumerate(parents):
        allowed[node, prefix + node] = True
        while parent >= 0:
            allowed[node, prefix + parent] = True
            parent = parents[parent]
    return tokens, positions, allowed


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_tree_forward_equals_the_module_forward(arch):
    base = build_base(arch, seed=3)
    if arch == "qwen2":
        assert base.model.layers[0].self_attn.q_proj.bias is not None, "Qwen2's q/k/v biases are exercised"
        with torch.no_grad():
            for layer in base.model.layers:
                layer.self_attn.q_proj.bias.normal_()
    tokens, positions, allowed = tree_inputs(5)
    (reference, keys, values), (fused, fused_keys, fused_values) = module_and_fused(base, tokens, positions, allowed)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused_keys, keys, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused_values, values, atol=1e-5, rtol=1e-4)


def test_one_row_without_a_mask_equals_a_plain_step():
    base = build_base("llama", seed=4)
    (reference, keys, _), (fused, fused_keys, _) = module_and_fused(base, torch.tensor([[17]]), torch.tensor([[0]]), None)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused_keys, keys, atol=1e-5, rtol=1e-4)


def test_changed_weights_are_packed_again_when_a_generation_starts():
    base = build_base("llama", seed=5)
    tokens, positions, allowed = tree_inputs(5)
    before = module_and_fused(base, tokens, positions, allowed)[1][0]
    with torch.no_grad():
        base.model.layers[1].mlp.down_proj.weight.mul_(2.0)
    runner = TargetRunner(base)
    assert runner.use_fast_verify(8) and runner.fast.fused is shared_fused_decoder(base)
    runner.reset(64)  # what every generation does first
    (reference, _, _), (fused, _, _) = module_and_fused(base, tokens, positions, allowed)
    assert not torch.allclose(fused, before, atol=1e-3)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-4)


def test_models_it_would_compute_differently_are_refused(monkeypatch):
    assert unsupported_reason(build_base("llama")) is None and unsupported_reason(build_base("qwen2")) is None
    assert "fp32" in unsupported_reason(build_base("llama").to(torch.bfloat16))
    gelu = build_base("llama")
    gelu.config.hidden_act = "gelu"
    assert "SiLU" in unsupported_reason(gelu)
    config = MistralConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    assert "sliding" in unsupported_reason(MistralForCausalLM(config).eval())
    config.sliding_window = None
    assert unsupported_reason(MistralForCausalLM(config).eval()) is None
    other = build_base("llama")
    other.config.model_type = "gemma"
    assert "gemma" in unsupported_reason(other) and shared_fused_decoder(other) is None
    monkeypatch.setenv(FUSED_SWITCH, "0")
    assert shared_fused_decoder(build_base("llama")) is None
    monkeypatch.setenv(FUSED_SWITCH, "1")
    monkeypatch.setenv("JAKIRO_FAST_KERNEL", "mkl")
    assert shared_fused_decoder(build_base("llama")) is None


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_short_prompts_prefill_through_the_fused_layers_like_the_module_forward(arch):
    base = build_base(arch, seed=6)
    prompt = torch.randint(1, base.config.vocab_size, (1, 150))
    plain, fast = TargetRunner(base), TargetRunner(base)
    assert fast.use_fast_verify(8) and fast.fast.fused is not None
    outputs = []
    for runner in (plain, fast):
        runner.reset(256)
        logits, hidden = runner.extend(prompt[:, :3])  # fused, on a cache it allocates
        logits, hidden = runner.extend(prompt[:, 3:3 + FUSED_PREFILL_ROWS])  # fused, after a filled cache
        rows = fast.fast.fused.layer_rows[0]
        logits, hidden = runner.extend(prompt[:, 3 + FUSED_PREFILL_ROWS:])  # longer: the module forward
        assert fast.fast.fused.layer_rows[0] == rows
        step, _ = runner.extend(torch.tensor([[7]]))
        outputs.append((logits, hidden, step, runner.cache.layers[-1].keys[:, :, :runner.length]))
    assert fast.fast.fused.layer_rows[0] == 3 + FUSED_PREFILL_ROWS
    for reference, candidate in zip(*outputs):
        torch.testing.assert_close(candidate, reference, atol=1e-5, rtol=1e-4)


def test_a_cache_the_fused_layers_cannot_use_falls_back_to_the_packed_module_forward(monkeypatch):
    base = build_base("llama", seed=8)
    plain, fast = TargetRunner(base), TargetRunner(base)
    assert fast.use_fast_verify(8) and fast.fast.fused is not None
    monkeypatch.setattr(type(fast.fast.fused), "ready", lambda self, cache, allocate=False: False)
    tree = DraftTree(tokens=torch.tensor([5, 9, 11, 3, 7]), parents=torch.tensor([-1, 0, 0, 1, 1]))
    calls, fused_calls = shared_packed_linears(base).packed_calls, fast.fast.fused.calls
    results = []
    for runner in (plain, fast):
        runner.reset(64)
        runner.extend(random_prompt(7, base.config.vocab_size, low=5, high=5))
        logits, hidden = runner.verify(tree)
        results.append((torch.stack([logits[i] for i in range(len(tree))]), hidden))
    assert shared_packed_linears(base).packed_calls > calls and fast.fast.fused.calls == fused_calls
    for reference, candidate in zip(*results):
        torch.testing.assert_close(candidate, reference, atol=1e-5, rtol=1e-4)
