"""Kangaroo decoding is lossless (greedy identity, chain and tree), verification reuses the shallow work, and
the shared cache and the adapter's cache after accepted and rejected rounds equal a from-scratch recomputation."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.kv_cache import PreallocatedLayer
from kangaroo.model.drafter import KangarooDrafter
from tests.kangaroo.helpers import make_kangaroo
from tests.utils import hf_greedy, random_prompt

# (id, arch, base options, adapter/drafter options, oracle adapter)
CASES = [
    ("llama-chain-random", "llama", dict(layers=3), dict(exit_layer=1, threshold=0.0, steps=4), False),
    ("llama-chain-oracle", "llama", dict(layers=4, logit_scale=15.0, context_mix=0.3),
     dict(exit_layer=2, threshold=0.2, steps=6), True),
    ("llama-tree-oracle", "llama", dict(layers=4, logit_scale=15.0, context_mix=0.6),
     dict(exit_layer=2, threshold=0.0, steps=5, tree_levels=2), True),
    ("llama-tree3-draftvocab", "llama", dict(layers=3, logit_scale=15.0, context_mix=0.3),
     dict(exit_layer=1, threshold=0.3, steps=4, tree_levels=3, tree_width=3, draft_vocab_size=60), True),
    ("llama-steps1", "llama", dict(layers=2, logit_scale=15.0, context_mix=0.3),
     dict(exit_layer=1, threshold=0.9, steps=1), True),
    ("qwen2-chain-oracle", "qwen2", dict(layers=3, logit_scale=15.0, context_mix=0.3),
     dict(exit_layer=1, threshold=0.1, steps=6), True),
    ("qwen2-tree-random", "qwen2", dict(layers=3), dict(exit_layer=2, threshold=0.0, steps=3, tree_levels=1), False),
]
ADAPTER_KEYS = ("draft_vocab_size",)
PROMPT_SEEDS = (0, 1, 2)
MAX_NEW = 24


def build(tiny_base, case):
    _, arch, base_options, options, oracle = case
    base = tiny_base(arch, **base_options)
    adapter_options = {k: options[k] for k in ADAPTER_KEYS if k in options}
    drafter_options = {k: v for k, v in options.items() if k not in ADAPTER_KEYS}
    return base, make_kangaroo(base, oracle=oracle, adapter_options=adapter_options, **drafter_options)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_greedy_matches_generate(tiny_base, case):
    base, ea = build(tiny_base, case)
    drafter = ea.drafter
    assert isinstance(drafter, KangarooDrafter)
    accepted = 0
    for seed in PROMPT_SEEDS:
        prompt = random_prompt(seed, base.config.vocab_size)
        got = ea.eagenerate(prompt, max_new_tokens=MAX_NEW)
        assert got.tolist() == hf_greedy(base, prompt, MAX_NEW).tolist(), f"{case[0]}, prompt seed {seed}"
        stats = ea.last_stats
        assert stats.new_tokens == MAX_NEW
        assert all(1 <= n <= drafter.steps + 1 for n in stats.accept_lengths)
        assert 1 + sum(stats.accept_lengths[:-1]) < MAX_NEW <= 1 + sum(stats.accept_lengths)
        accepted += sum(stats.accept_lengths) - stats.rounds
    if case[-1]:  # the oracle adapter drafts the base's continuation: many drafts accepted
        assert accepted / (len(PROMPT_SEEDS) * MAX_NEW) > 0.25, f"{case[0]}: only {accepted} drafts accepted"


def test_oracle_on_a_bigram_base_accepts_every_draft(tiny_base):
    """Layers that do not change the residual stream make the oracle exact: every round drafts `steps` tokens
    (threshold 0) and accepts them all, plus the bonus token."""
    base = tiny_base("llama", layers=3, logit_scale=15.0, context_mix=0.0)
    ea = make_kangaroo(base, exit_layer=1, threshold=0.0, steps=5)
    prompt = random_prompt(5, base.config.vocab_size)
    out = ea.eagenerate(prompt, max_new_tokens=37)
    assert out.tolist() == hf_greedy(base, prompt, 37).tolist()
    assert ea.last_stats.accept_lengths == [6] * 6  # 1 (prefill) + 6 * 6 = 37


def test_tree_shape_and_runner_up_leaves(tiny_base):
    base = tiny_base("llama", layers=3, logit_scale=15.0, context_mix=0.3)
    ea = make_kangaroo(base, exit_layer=1, threshold=0.0, steps=4, tree_levels=2, tree_width=3)
    drafter = ea.drafter
    assert drafter.max_tree_tokens == 1 + 4 + 2 * 2
    trees = []
    original = drafter.propose
    drafter.propose = lambda root: trees.append(original(root)) or trees[-1]
    ea.eagenerate(random_prompt(3, base.config.vocab_size), max_new_tokens=10)
    for tree in trees:
        # root, then (chain, leaf, leaf) at depths 1 and 2, then a plain chain: parents are the chain nodes
        assert tree.parents.tolist() == [-1, 0, 0, 0, 1, 1, 1, 4, 7]
        assert tree.depths.tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 4]
        assert len(set(tree.tokens[1:4].tolist())) == 3 and len(set(tree.tokens[4:7].tolist())) == 3


def test_verification_runs_only_the_deep_layers(tiny_base):
    """Every token passes every decoder layer exactly once: the shallow layers while drafting (or in the prefill),
    the deep ones in verification; the shallow states are reused, never recomputed."""
    base = tiny_base("llama", layers=4, logit_scale=15.0, context_mix=0.3)
    ea = make_kangaroo(base, exit_layer=2, threshold=0.0, steps=4, tree_levels=1)
    seen = [0] * 4
    hooks = [layer.register_forward_pre_hook(lambda module, args, kwargs, i=i: seen.__setitem__(
        i, seen[i] + (args[0] if args else kwargs["hidden_states"]).shape[1]), with_kwargs=True)
        for i, layer in enumerate(base.model.layers)]
    trees = []
    original = ea.drafter.propose
    ea.drafter.propose = lambda root: trees.append(original(root)) or trees[-1]
    fused_before = list(ea._target.fast.fused.layer_rows) if getattr(ea._target.fast, "fused", None) else None
    try:
        prompt = random_prompt(4, base.config.vocab_size)
        ea.eagenerate(prompt, max_new_tokens=20)
    finally:
        for hook in hooks:
            hook.remove()
    fused = ea._target.fast.fused if ea._target.fast is not None else None
    if fused is not None:  # fused layers run without the modules' hooks: count their rows too
        seen = [hooked + fused_rows - before for hooked, fused_rows, before in zip(seen, fused.layer_rows, fused_before)]
        assert fused.layer_rows != fused_before, "the split forwards ran fused"
    expected = prompt.shape[1] + sum(len(t) for t in trees)
    assert seen == [expected] * 4


@pytest.mark.parametrize("tree_levels", [0, 2], ids=["chain", "tree"])
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampling"])
def test_caches_equal_recomputation(tiny_base, tree_levels, temperature):
    base = tiny_base("llama", layers=4, logit_scale=15.0, context_mix=0.3)
    exit_layer = 2
    ea = make_kangaroo(base, exit_layer=exit_layer, threshold=0.5, steps=5, tree_levels=tree_levels, sharpness=3.0)
    drafter, target = ea.drafter, ea._target
    snapshots, outcomes = [], []  # per round: (committed, per-layer lengths, tree size); (accepted, drafted, leaf)
    propose, accept = drafter.propose, drafter.accept

    def recording_propose(root):
        tree = propose(root)
        snapshots.append((target.length, target.cache.layer_lengths(), len(tree)))
        return tree

    def recording_accept(ids, features):
        round_ = drafter._round
        last = round_.tree.path_to(0)  # the root
        tokens = round_.tree.tokens.tolist()
        for token in ids[0, 1:].tolist():
            last = [c for c in round_.tree.children(last[-1]) if tokens[c] == token][:1] or last
        outcomes.append((ids.shape[1] - 1, round_.read, last[-1] not in round_.chain))
        accept(ids, features)

    drafter.propose, drafter.accept = recording_propose, recording_accept
    prompt = random_prompt(2, base.config.vocab_size, low=5)
    torch.manual_seed(0)
    steps = []
    for ids in ea.ea_generate(prompt, temperature=temperature, max_new_tokens=150):
        steps.append(ids)
        if len(steps) == 9:
            break
    assert len(snapshots) == len(outcomes) == len(steps) - 1 == 8
    # rounds that accepted drafts and rounds that rejected one both happened; greedy also saw every draft of a
    # round accepted (the adapter never read the last one) and, with the tree, a runner-up leaf accepted
    assert any(a > 0 for a, _, _ in outcomes) and any(a < d or leaf for a, d, leaf in outcomes)
    if temperature == 0.0:
        assert any(a == d and not leaf for a, d, leaf in outcomes)
        assert any(leaf for *_, leaf in outcomes) == bool(tree_levels)
    for r, (committed, layer_lengths, size) in enumerate(snapshots):
        assert committed == steps[r].shape[1] - 1  # everything but the root is committed
        # while drafting, only the shallow layers ran ahead, by exactly the tree's nodes
        assert layer_lengths == [committed + size] * exit_layer + [committed] * (4 - exit_layer)

    committed = steps[-1][:, :-1]
    n = committed.shape[1]
    with torch.no_grad():
        reference = base.model(committed, use_cache=True, output_hidden_states=True)
    assert target.cache.layer_lengths() == [n] * 4
    for layer, ref in zip(target.cache.layers, reference.past_key_values.layers):
        torch.testing.assert_close(layer.keys[:, :, :n], ref.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(layer.values[:, :, :n], ref.values, atol=1e-5, rtol=1e-4)
    # the adapter: its cache plus the positions it has not read yet cover the committed ones, and its entries
    # equal a causal adapter forward over the committed positions' shallow stream
    pending = 0 if drafter.pending is None else drafter.pending.shape[1]
    kept = drafter.cache.length
    assert kept + pending == n and kept > 0
    fresh = PreallocatedLayer(capacity=n)
    stream = reference.hidden_states[exit_layer]
    with torch.no_grad():
        ea.ea_layer(stream, cache=fresh)
    torch.testing.assert_close(drafter.cache.keys[:, :, :kept], fresh.keys[:, :, :kept], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(drafter.cache.values[:, :, :kept], fresh.values[:, :, :kept], atol=1e-5, rtol=1e-4)
    if pending:
        torch.testing.assert_close(drafter.pending[0], stream[0, kept:], atol=1e-5, rtol=1e-4)


def test_options_are_checked(tiny_base):
    from jakiro.errors import ConfigError

    base = tiny_base("llama", layers=3)
    for options, fragment in [(dict(threshold=1.5), "threshold"), (dict(steps=0), "steps"),
                              (dict(exit_layer=3), "exit_layer"), (dict(tree_levels=-1), "tree_levels"),
                              (dict(tree_width=0), "tree_width"), (dict(depth_of_tree=2), "unknown Kangaroo option")]:
        with pytest.raises(ConfigError, match=fragment):
            make_kangaroo(base, **options)


def test_cache_leaves_room_for_the_kangaroo_tree(tiny_base):
    """The KV cache reserves the largest Kangaroo tree (1 + steps + leaves), not the tree budget of other methods."""
    from jakiro.errors import ContextLengthError

    base = tiny_base("llama", layers=3, logit_scale=15.0, context_mix=0.0)
    ea = make_kangaroo(base, exit_layer=1, threshold=0.0, steps=6, tree_levels=1, total_token=2)
    assert ea.drafter.max_tree_tokens == 8
    prompt = random_prompt(6, base.config.vocab_size, low=5, high=5)
    most = 256 - 5 - 8
    assert ea.eagenerate(prompt, max_new_tokens=most).tolist() == hf_greedy(base, prompt, most).tolist()
    assert max(ea.last_stats.accept_lengths) == 7  # whole trees were verified at the end of the context
    with pytest.raises(ContextLengthError):
        ea.eagenerate(prompt, max_new_tokens=most + 1)
