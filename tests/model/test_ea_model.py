"""Greedy speculative decoding is token-identical to `generate`, stops where `generate` stops, and accepts.

Every draft method runs through the same cases: Jakiro, the EAGLE-2 head, and Jakiro* (static and dynamic tree)."""

from __future__ import annotations

import pytest

from jakiro.model.ea_model import EaModel
from tests.utils import build_base, decouple_experts, hf_greedy, make_oracle, method_options, random_prompt

# (id, arch, base options, tree/head options, oracle head)
CASES = [
    ("llama-default-tree", "llama", {}, dict(total_token=60, depth=5, top_k=10), False),
    ("llama-chain-budget1", "llama", {}, dict(total_token=2, depth=1, top_k=1), False),
    ("llama-small-nocepd", "llama", {}, dict(total_token=5, depth=2, top_k=3, cepd=False), False),
    ("llama-eagle2-deep", "llama", {}, dict(total_token=64, depth=6, top_k=8, num_experts=1), False),
    ("llama-draftvocab", "llama", {}, dict(total_token=16, depth=3, top_k=4, draft_vocab_size=24), False),
    ("llama-3experts-legacy", "llama", {}, dict(total_token=30, depth=4, top_k=5, num_experts=3,
                                                 legacy_cepd_alignment=True), False),
    ("qwen2-default-tree", "qwen2", {}, dict(total_token=60, depth=5, top_k=10), False),
    ("qwen2-eagle2-draftvocab", "qwen2", {}, dict(total_token=5, depth=4, top_k=2, num_experts=1,
                                                   draft_vocab_size=32), False),
    ("qwen2-legacy", "qwen2", {}, dict(total_token=30, depth=3, top_k=6, legacy_cepd_alignment=True), False),
    # Hand-set bigram drafts on almost-bigram bases: deep accepted paths, heavy KV compaction.
    ("llama-oracle-cepd-d1", "llama", dict(logit_scale=15.0, context_mix=0.3), dict(total_token=10, depth=1, top_k=5), True),
    ("llama-oracle-chain", "llama", dict(logit_scale=15.0, context_mix=0.3), dict(total_token=12, depth=6, top_k=1,
                                                                                  cepd=False), True),
    ("llama-oracle-wide", "llama", dict(logit_scale=15.0, context_mix=0.3), dict(total_token=70, depth=6, top_k=2,
                                                                                 cepd=False), True),
    ("llama-oracle-cepd", "llama", dict(logit_scale=15.0, context_mix=0.6), dict(total_token=40, depth=5, top_k=3), True),
    ("llama-oracle-legacy", "llama", dict(logit_scale=15.0, context_mix=0.6),
     dict(total_token=40, depth=4, top_k=3, legacy_cepd_alignment=True), True),
    ("qwen2-oracle-draftvocab", "qwen2", dict(logit_scale=15.0, context_mix=0.3),
     dict(total_token=60, depth=5, top_k=10, num_experts=1, draft_vocab_size=80), True),
    ("qwen2-oracle-cepd", "qwen2", dict(logit_scale=15.0, context_mix=1.0), dict(total_token=8, depth=3, top_k=2), True),
    # Jakiro*: the original static tree (26 nodes, depth 6), cut by a budget, custom choices, the dynamic tree
    ("llama-star-static", "llama", {}, dict(method="jakiro_star"), False),
    ("llama-star-static-budget8", "llama", {}, dict(method="jakiro_star", total_token=8), False),
    ("llama-star-choices", "llama", {}, dict(method="jakiro_star", tree_choices=[[0], [1], [0, 0], [1, 0], [0, 0, 0]]),
     False),
    ("llama-star-dynamic", "llama", {}, dict(method="jakiro_star", tree="dynamic", total_token=30, depth=4, top_k=5),
     False),
    ("qwen2-star-static-draftvocab", "qwen2", {}, dict(method="jakiro_star", draft_vocab_size=32), False),
    ("qwen2-star-dynamic-3experts", "qwen2", {}, dict(method="jakiro_star", num_experts=3, tree="dynamic",
                                                       total_token=20, depth=3, top_k=4), False),
    ("llama-star-oracle-static", "llama", dict(logit_scale=15.0, context_mix=0.3), dict(method="jakiro_star"), True),
    ("llama-star-oracle-dynamic", "llama", dict(logit_scale=15.0, context_mix=0.3),
     dict(method="jakiro_star", tree="dynamic", total_token=40, depth=5, top_k=3), True),
    ("qwen2-star-oracle-draftvocab", "qwen2", dict(logit_scale=15.0, context_mix=0.3),
     dict(method="jakiro_star", total_token=20, draft_vocab_size=80), True),
]
PROMPT_SEEDS = (0, 1, 2)
MAX_NEW = 24
_accepted: dict[str, int] = {}


def make_ea(base, options, oracle: bool, seed: int = 0, sharpness: float = 1.0) -> EaModel:
    """A head of ``options``; hand-set to an oracle, else random (a random Jakiro* head gets decoupled experts,
    so its children really come from both experts and continue from different features)."""
    ea = EaModel.from_base_model(base, seed=seed, **options)
    if oracle:
        make_oracle(ea, sharpness)
    elif ea.method == "jakiro_star":
        decouple_experts(ea)
    return ea


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_greedy_matches_generate(tiny_base, case):
    name, arch, base_options, options, oracle = case
    base = tiny_base(arch, **base_options)
    ea = make_ea(base, options, oracle)
    vocab = base.config.vocab_size
    accepted = 0
    for seed in PROMPT_SEEDS:
        prompt = random_prompt(seed, vocab)
        expected = hf_greedy(base, prompt, MAX_NEW)
        got = ea.eagenerate(prompt, max_new_tokens=MAX_NEW)
        assert got.tolist() == expected.tolist(), f"{name}, prompt seed {seed}"
        stats = ea.last_stats
        assert stats.new_tokens == MAX_NEW and stats.prompt_tokens == prompt.shape[1]
        assert all(1 <= n <= ea.drafter.max_path_drafts + 1 for n in stats.accept_lengths)
        # Every round emits accepted + 1 tokens; only the last round may be cut by max_new_tokens.
        assert 1 + sum(stats.accept_lengths[:-1]) < MAX_NEW <= 1 + sum(stats.accept_lengths)
        accepted += sum(stats.accept_lengths) - stats.rounds
    _accepted[name] = accepted
    if oracle:
        # The hand-set head drafts the base's continuation: several tokens per round on average.
        assert accepted / (len(PROMPT_SEEDS) * MAX_NEW) > 0.3, f"{name}: only {accepted} drafts accepted"


def test_random_heads_accept_something(tiny_base):
    """Across the random-head configurations above at least some drafted tokens were accepted."""
    for case in CASES:
        if case[0] not in _accepted:
            test_greedy_matches_generate(tiny_base, case)
    random_total = sum(_accepted[name] for name, *_, oracle in CASES if not oracle)
    assert random_total > 0


def test_oracle_accepts_whole_paths(tiny_base, draft_method):
    """On a pure bigram base the hand-set head drafts exactly the base's continuation: every round accepts
    a whole deepest path plus the bonus token (dynamic trees: the pool of top_k=2 trees fits the budget
    entirely, and the sharp draft keeps its top-1 chain among the 2 nodes expanded per level; Jakiro*'s
    static tree: its rank-0 chain is 6 deep)."""
    base = tiny_base("llama", logit_scale=15.0, context_mix=0.0)
    ea = make_ea(base, method_options(draft_method, total_token=70, depth=6, top_k=2, cepd=False), oracle=True,
                 sharpness=50.0)
    per_round = ea.drafter.max_path_drafts + 1
    prompt = random_prompt(5, base.config.vocab_size)
    out = ea.eagenerate(prompt, max_new_tokens=1 + 6 * per_round)
    assert out.tolist() == hf_greedy(base, prompt, 1 + 6 * per_round).tolist()
    assert ea.last_stats.accept_lengths == [per_round] * 6  # 1 (prefill) + 6 whole paths


def test_stops_exactly_at_eos(draft_method):
    """With an EOS id the output ends at the first EOS, as `generate`, also when EOS lies inside a round."""
    plain = build_base("llama", logit_scale=15.0, context_mix=0.3, seed=3)
    prompt = random_prompt(7, plain.config.vocab_size)
    continuation = hf_greedy(plain, prompt, 30)[0, prompt.shape[1]:].tolist()
    cut_mid_round = 0
    tried = 0
    for position in range(1, len(continuation)):
        eos = continuation[position]
        if eos in continuation[:position]:
            continue
        tried += 1
        base = build_base("llama", logit_scale=15.0, context_mix=0.3, seed=3, eos=eos)
        ea = make_ea(base, method_options(draft_method, total_token=40, depth=5, top_k=2, cepd=False), oracle=True)
        expected = hf_greedy(base, prompt, 30)
        got = ea.eagenerate(prompt, max_new_tokens=30)
        assert got.tolist() == expected.tolist()
        assert got[0, -1] == eos and (got[0, prompt.shape[1]:-1] != eos).all()
        assert ea.last_stats.new_tokens == position + 1
        cut_mid_round += 1 + sum(ea.last_stats.accept_lengths) > position + 1
        if tried >= 6:
            break
    assert tried >= 3 and cut_mid_round >= 1


def test_stops_exactly_at_max_new_tokens(tiny_base, draft_method):
    base = tiny_base("llama", logit_scale=15.0, context_mix=0.3)
    ea = make_ea(base, method_options(draft_method, total_token=40, depth=5, top_k=2, cepd=False), oracle=True)
    prompt = random_prompt(11, base.config.vocab_size)
    full = hf_greedy(base, prompt, 16)
    cut_mid_round = 0
    for max_new in range(1, 17):
        got = ea.eagenerate(prompt, max_new_tokens=max_new)
        assert got.tolist() == full[:, : prompt.shape[1] + max_new].tolist()
        assert ea.last_stats.new_tokens == max_new
        cut_mid_round += 1 + sum(ea.last_stats.accept_lengths) > max_new
    assert cut_mid_round >= 3


def test_streaming_and_log(tiny_base, draft_method):
    base = tiny_base("qwen2")
    ea = make_ea(base, method_options(draft_method, total_token=12, depth=3, top_k=3), oracle=False)
    prompt = random_prompt(4, base.config.vocab_size)
    steps = list(ea.ea_generate(prompt, max_new_tokens=10))
    assert steps[0].shape[1] == prompt.shape[1] + 1  # the prefill's token comes first
    assert all(a.shape[1] < b.shape[1] for a, b in zip(steps, steps[1:]))
    ids, new_tokens, rounds = ea.eagenerate(prompt, max_new_tokens=10, log=True)
    assert ids.tolist() == steps[-1].tolist() == hf_greedy(base, prompt, 10).tolist()
    assert new_tokens == 10 and rounds == len(steps) - 1 == ea.last_stats.rounds


def test_naive_generate_matches_generate(tiny_base):
    for arch in ("llama", "qwen2"):
        base = tiny_base(arch)
        ea = make_ea(base, dict(total_token=8, depth=2, top_k=2), oracle=False)
        prompt = random_prompt(8, base.config.vocab_size)
        ids, new_tokens, rounds = ea.naivegenerate(prompt, max_new_tokens=12, log=True)
        assert ids.tolist() == hf_greedy(base, prompt, 12).tolist()
        assert new_tokens == 12 and ea.last_stats.accept_lengths == [1] * 11


@pytest.mark.parametrize("variant", ["jakiro", "jakiro_star"])
def test_auto_tree_budget(tiny_base, variant):
    """total_token=-1 picks a budget by timing the target; the result is still lossless (a static tree is cut to it)."""
    from jakiro.model.budget import CANDIDATE_BUDGETS

    base = tiny_base("llama")
    ea = EaModel.from_base_model(base, seed=0, **method_options(variant, total_token=-1, depth=3, top_k=4))
    assert ea.total_token in CANDIDATE_BUDGETS and set(ea.budget_timings) == set(CANDIDATE_BUDGETS)
    assert ea.drafter.total_token == ea.total_token
    if variant == "jakiro_star":
        assert len(ea.drafter.shape) == min(ea.total_token, 27)
    prompt = random_prompt(9, base.config.vocab_size)
    assert ea.eagenerate(prompt, max_new_tokens=10).tolist() == hf_greedy(base, prompt, 10).tolist()
