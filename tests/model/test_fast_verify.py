"""The fast verification forward: padded trees with packed weights verify exactly what the plain forward does.

Padding rows must never change the output: the real rows' features and logits equal the unpadded
forward's up to rounding, the accepted KV entries continue the sequence like plain decoding, and
greedy generation stays token-identical to `generate` with the fast forward on, padded or not."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.ea_model import EaModel
from jakiro.model.fast_linear import mkl_packing_available
from jakiro.model.fast_verify import EAGER_LOGIT_ROWS, FastVerify, shared_packed_linears
from jakiro.model.fused_decoder import FUSED_SWITCH
from jakiro.model.target import TargetRunner
from jakiro.model.tree import DraftTree
from tests.utils import build_base, hf_greedy, make_oracle, random_prompt

pytestmark = pytest.mark.skipif(not mkl_packing_available(), reason="LOUD: this torch build has no MKL packed linear")

TREE = DraftTree(tokens=torch.tensor([5, 9, 11, 3, 7, 21, 4, 8, 30]), parents=torch.tensor([-1, 0, 0, 1, 1, 2, 3, 6, 0]))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("rows,eager", [(9, True), (13, True), (13, False), (20, False)])
def test_padded_packed_verification_equals_the_plain_one(tiny_base, arch, rows, eager, fused, monkeypatch):
    monkeypatch.setenv(FUSED_SWITCH, "1" if fused else "0")
    base = tiny_base(arch)
    prompt = random_prompt(3, base.config.vocab_size, low=6)
    plain, fast = TargetRunner(base), TargetRunner(base)
    assert fast.use_fast_verify(rows, eager_logits=eager)
    assert (fast.fast.fused is not None) == fused
    calls = shared_packed_linears(base).packed_calls
    fused_calls = fast.fast.fused.calls if fused else 0
    outputs = []
    for runner in (plain, fast):
        runner.reset(64)
        runner.extend(prompt)
        start = runner.length
        logits, hidden = runner.verify(TREE)
        assert hidden.shape == (len(TREE), base.config.hidden_size)
        assert runner.length == start + (rows if runner is fast else len(TREE))
        runner.commit(start, [0, 1, 3, 6, 7])
        after, _ = runner.extend(torch.tensor([[2, 6]]))
        outputs.append((torch.stack([logits[i] for i in range(len(TREE))]), hidden, after))
    assert fast.fast.padded_rounds == (rows > len(TREE))
    if fused:
        assert fast.fast.fused.calls > fused_calls, "the fused layers really ran"
    else:
        assert shared_packed_linears(base).packed_calls > calls, "the packed weights really ran"
    for reference, candidate in zip(outputs[0], outputs[1]):
        torch.testing.assert_close(candidate, reference, atol=1e-5, rtol=1e-4)
    assert torch.equal(outputs[0][0].argmax(-1), outputs[1][0].argmax(-1))


def test_a_tree_that_does_not_fit_runs_the_plain_forward(tiny_base):
    base = tiny_base("llama")
    runner = TargetRunner(base)
    runner.use_fast_verify(12)
    runner.reset(20)  # 8 cached + 12 padded rows fit exactly; 9 cached do not
    runner.extend(random_prompt(0, base.config.vocab_size, low=9, high=9))
    runner.verify(TREE)
    assert runner.length == 9 + len(TREE) and runner.fast.padded_rounds == 0
    big = DraftTree(tokens=torch.arange(1, 15), parents=torch.arange(-1, 13))
    runner.reset(64)
    runner.extend(torch.tensor([[1, 2]]))
    runner.verify(big)  # more nodes than rows
    assert runner.length == 2 + len(big)


def test_only_fp32_cpu_models_qualify(tiny_base):
    base16 = build_base("llama").to(torch.bfloat16)
    assert not TargetRunner(base16).use_fast_verify(8)
    runner = TargetRunner(tiny_base("llama"))
    assert runner.use_fast_verify(8) and not runner.use_fast_verify(None) and runner.fast is None
    assert FastVerify(tiny_base("llama"), EAGER_LOGIT_ROWS).eager_logits
    assert not FastVerify(tiny_base("llama"), EAGER_LOGIT_ROWS + 1).eager_logits


@pytest.mark.parametrize("arch,base_options,tree", [
    ("llama", {}, dict(total_token=12, depth=3, top_k=4)),
    ("qwen2", {}, dict(total_token=20, depth=4, top_k=5, num_experts=1, cepd=False)),
    ("llama", dict(logit_scale=15.0, context_mix=0.3), dict(total_token=10, depth=5, top_k=2)),
])
def test_greedy_generation_with_padding_is_identical_to_generate(arch, base_options, tree):
    base = build_base(arch, **base_options)
    ea = EaModel.from_base_model(base, seed=0, **tree)
    if base_options:
        make_oracle(ea, sharpness=2.0)
    assert ea.fast_verify, "fp32 on CPU: the fast forward is on by default"
    slow = EaModel(base, ea.ea_layer, total_token=ea.total_token, depth=ea.depth, top_k=ea.top_k,
                   fast_verify=False, **ea.drafter_options)
    assert slow._target.fast is None
    ea._target.use_fast_verify(ea.total_token + 5)  # every tree is padded by at least 5 rows
    for seed in range(3):
        prompt = random_prompt(seed, base.config.vocab_size, low=3)
        calls, padded = fast_forwards(ea._target.fast), ea._target.fast.padded_rounds
        out = ea.eagenerate(prompt, max_new_tokens=24, max_length=200)
        assert ea._target.fast.padded_rounds > padded and fast_forwards(ea._target.fast) > calls
        assert torch.equal(out, hf_greedy(base, prompt, 24)), "token-identical to generate"
        assert torch.equal(out, slow.eagenerate(prompt, max_new_tokens=24, max_length=200))


def fast_forwards(fast: FastVerify) -> int:
    """Forwards that ran the fast path: fused decoder calls, or products on packed weights."""
    return fast.fused.calls if fast.fused is not None else fast.linears.packed_calls


REAL_PROMPTS = ("Why is the sky blue?", "Write a haiku about autumn leaves.",
                "List three tips for learning a new language.")


@pytest.mark.slow
@pytest.mark.parametrize("total_token", [8, 24])
def test_real_default_model_with_the_fast_forward_is_identical_to_generate(total_token):
    pytest.importorskip("gguf", reason="LOUD: gguf missing, the embedded default model cannot be converted")
    from jakiro.chat import prompt_ids

    ea = EaModel.from_pretrained("smollm2-135m-instruct", "jakiro-smollm2-135m-instruct", total_token=total_token,
                                 depth=5, top_k=8)
    assert ea.fast_verify and ea._target.fast.eager_logits == (total_token <= EAGER_LOGIT_ROWS)
    assert ea._target.fast.fused is not None, "SmolLM2 is a LLaMA: its layers run fused"
    tokenizer = ea.get_tokenizer()
    for text in REAL_PROMPTS:
        ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": text}])])
        calls = ea._target.fast.fused.calls
        out = ea.eagenerate(ids, max_new_tokens=48)
        assert ea._target.fast.fused.calls > calls, "the fused layers really ran"
        assert torch.equal(out, hf_greedy(ea.base_model, ids, 48)), text
