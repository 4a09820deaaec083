"""Input validation of the generation entry points: clear errors, raised before any model work."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError, ContextLengthError
from jakiro.model.ea_model import EaModel
from jakiro.model.generation import GenerationStats, plan_capacity
from tests.utils import method_options


@pytest.fixture()
def counted_ea(tiny_base, draft_method):
    """An EaModel (every draft method) whose base model counts its forwards (context length 256, tree of 20)."""
    base = tiny_base("llama")
    ea = EaModel.from_base_model(base, seed=0, **method_options(draft_method, total_token=20, depth=3, top_k=4))
    calls = []
    handle = base.model.register_forward_pre_hook(lambda *_: calls.append(1))
    yield ea, calls
    handle.remove()


@pytest.mark.parametrize("method", ["eagenerate", "naivegenerate"])
def test_context_overflow_raises_before_work(counted_ea, method):
    ea, calls = counted_ea
    generate = getattr(ea, method)
    tree = (ea.drafter.max_tree_tokens or 20) if method == "eagenerate" else 1  # Kangaroo reserves its own tree
    prompt = torch.randint(1, 96, (1, 200))
    fused_before = fused_forwards(ea)
    with pytest.raises(ContextLengthError) as excinfo:
        generate(prompt, max_new_tokens=257 - 200 - tree)
    assert "256" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(ContextLengthError):
        generate(torch.randint(1, 96, (1, 10)), max_new_tokens=30, max_length=10 + 30 + tree - 1)
    assert calls == [] and fused_forwards(ea) == fused_before  # nothing ran
    out = generate(prompt, max_new_tokens=256 - 200 - tree)  # exactly at the limit: fine
    assert out.shape[1] == 256 - tree and (calls or fused_forwards(ea) > fused_before)


def fused_forwards(ea) -> int:
    """Forwards that ran as fused layers (they bypass the modules' hooks)."""
    fused = ea._target.fast.fused if ea._target.fast is not None else None
    return 0 if fused is None else fused.calls + sum(fused.layer_rows)


@pytest.mark.parametrize("bad,fragment", [
    (torch.zeros(1, 0, dtype=torch.long), "empty"),
    (torch.ones(2, 5, dtype=torch.long), "batch size 1"),
    (torch.ones(1, 1, 5, dtype=torch.long), "shape"),
    (torch.ones(1, 5), "LongTensor"),
    ([[1, 2, 3]], "LongTensor"),
])
def test_bad_prompts(counted_ea, bad, fragment):
    ea, calls = counted_ea
    for generate in (ea.eagenerate, ea.naivegenerate):
        with pytest.raises(ConfigError, match=fragment):
            generate(bad, max_new_tokens=4)
    assert calls == []


@pytest.mark.parametrize("max_new_tokens", [0, -3, 2.5, None])
def test_bad_max_new_tokens(counted_ea, max_new_tokens):
    ea, calls = counted_ea
    with pytest.raises(ConfigError, match="max_new_tokens"):
        ea.eagenerate(torch.tensor([[1, 2]]), max_new_tokens=max_new_tokens)
    assert calls == []


def test_one_dimensional_prompt_and_int32_are_accepted(counted_ea):
    ea, _ = counted_ea
    a = ea.eagenerate(torch.tensor([4, 5, 6]), max_new_tokens=5)
    b = ea.eagenerate(torch.tensor([[4, 5, 6]], dtype=torch.int32), max_new_tokens=5)
    assert a.tolist() == b.tolist() and a.shape == (1, 8)


def test_plan_capacity_and_stats():
    assert plan_capacity(10, 20, 5, 35) == 35
    with pytest.raises(ContextLengthError):
        plan_capacity(10, 20, 6, 35)
    stats = GenerationStats(new_tokens=10, accept_lengths=[3, 2, 4], wall_time=2.0)
    assert stats.mean_accept_length == 3.0 and stats.tokens_per_second == 5.0
    assert GenerationStats().mean_accept_length == 0.0 and GenerationStats().tokens_per_second == 0.0
