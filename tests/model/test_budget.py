"""The tree budget chooser: τ(N) from the head's card/config or a counterfactual calibration, costs from the
device, and the budget maximising τ / round cost; the calibration's τ for a smaller budget is exactly what
running that budget yields."""

from __future__ import annotations

import json

import pytest
import torch

from jakiro.model import budget as budget_module
from jakiro.model.budget import (CANDIDATE_BUDGETS, BudgetChoice, calibrate, choose_budget, counterfactual_accepts,
                                 head_tau_curve, interpolate_tau, parse_card_tau)
from jakiro.model.cost import CostTable, ForwardCost
from jakiro.model.ea_model import EaModel
from jakiro.model.tree import CandidatePool, DraftTree
from tests.helpers.tiny_models import build_tiny_tokenizer
from tests.utils import build_base, hf_greedy, make_oracle, random_prompt

CARD = """# head

## τ by tree size (held-out prompts)
Greedy, depth 5, top_k 8, 4 held-out prompts, 32 new tokens each (real engine, `EaModel`):

| tree nodes | 4 | 8 | 16 | 32 | 60 |
| --- | --- | --- | --- | --- | --- |
| τ | 1.50 | 1.90 | 2.20 | 2.40 | 2.50 |
"""


def test_card_and_config_curves(tmp_path):
    assert parse_card_tau(CARD) == {4: 1.5, 8: 1.9, 16: 2.2, 32: 2.4, 60: 2.5}
    assert parse_card_tau("| tree nodes | 4 |\n| other | 1 |") is None
    (tmp_path / "README.md").write_text(CARD)
    curve, source = head_tau_curve(tmp_path)
    assert curve[8] == 1.9 and "model card" in source
    (tmp_path / "config.json").write_text(json.dumps({"extra": {"tau_by_tree_size": {"4": 1.2, "16": 1.8}}}))
    curve, source = head_tau_curve(tmp_path)
    assert curve == {4: 1.2, 16: 1.8} and "config" in source, "the machine-readable curve wins"
    assert head_tau_curve(tmp_path / "missing") is None and head_tau_curve(None) is None


def test_interpolation_is_log_linear_and_flat_outside():
    curve = {4: 1.5, 16: 2.5}
    assert interpolate_tau(curve, 2) == 1.5 and interpolate_tau(curve, 60) == 2.5
    assert interpolate_tau(curve, 8) == pytest.approx(2.0)


def test_budget_subset_is_what_a_smaller_budget_selects():
    gen = torch.Generator().manual_seed(0)
    pool = CandidatePool(root_token=1)
    first = pool.add(torch.randint(2, 50, (4,), generator=gen), -torch.rand(4, generator=gen), torch.full((4,), -1))
    parents = first.repeat_interleave(4)
    pool.add(torch.randint(2, 50, (16,), generator=gen), -1 - torch.rand(16, generator=gen), parents)
    big = pool.select(14)
    for budget in (2, 5, 9, 15):
        small = pool.select(budget - 1)
        subset = big.budget_subset(budget)
        assert sorted(big.tokens[subset].tolist()) == sorted(small.tokens.tolist())
    unscored = DraftTree(tokens=torch.tensor([1, 2]), parents=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="no draft scores"):
        unscored.budget_subset(2)


def test_counterfactual_accepts_follow_the_target_inside_each_subset():
    # root -> a (best) -> c ; root -> b (worse) ; target greedy: root -> 9 (a), a -> 7 (c), c -> 0
    tree = DraftTree(tokens=torch.tensor([1, 9, 8, 7]), parents=torch.tensor([-1, 0, 0, 1]),
                     scores=torch.tensor([float("inf"), -0.1, -0.5, -0.9]))
    logits = torch.zeros(4, 12)
    logits[0, 9] = logits[1, 7] = logits[3, 0] = 5.0
    assert counterfactual_accepts(tree, logits, (2, 3, 4)) == {2: 1, 3: 1, 4: 2}


@torch.no_grad()
def test_calibrated_tau_equals_running_each_budget():
    """Greedy decoding is deterministic per budget, so the counterfactual τ of budget N over the largest budget's
    rounds is checked against the rounds that budget N itself runs, round by round on a single prompt round."""
    base = build_base("llama", logit_scale=15.0, context_mix=0.3, vocab=len(build_tiny_tokenizer()))
    ea = EaModel.from_base_model(base, build_tiny_tokenizer(), seed=0, total_token=12, depth=3, top_k=3)
    make_oracle(ea, sharpness=0.7)  # a good but imperfect head: budgets differ in what they accept
    result = calibrate(ea, (3, 6, 12), prompts=("the cat sat",), max_new_tokens=2)
    assert result["rounds"] == 1 and ea.drafter.total_token == 12, "the drafter's own budget is restored"
    from jakiro.chat import prompt_ids

    prompt = torch.tensor([prompt_ids(ea.tokenizer, [{"role": "user", "content": "the cat sat"}])])
    for size, tau in result["tau"].items():
        run = EaModel(base, ea.ea_layer, ea.tokenizer, total_token=size, depth=3, top_k=3)
        run.eagenerate(prompt, max_new_tokens=20)
        assert run.last_stats.accept_lengths[0] == tau, size


COSTS = {4: 1.10, 8: 1.20, 16: 1.50, 32: 2.20}  # plain steps per verification (other sizes: 1 + N / 30)


def fake_table(model=None, candidates=tuple(COSTS), fast=True, step: float = 100.0, **_) -> CostTable:
    costs = {n: COSTS.get(n, 1 + n / 30) for n in candidates}
    return CostTable(prefix=1, repeats=1, entries=[
        ForwardCost(n, step, c * step, c, 5.0, c * step, c, True) for n, c in costs.items()])


def test_choice_maximises_tau_per_round_cost(monkeypatch, tmp_path):
    monkeypatch.setattr(budget_module, "forward_costs", fake_table)
    ea = EaModel.from_base_model(build_base("llama"), seed=0, total_token=8, depth=2, top_k=2)
    curve = ({4: 1.5, 8: 1.9, 16: 2.2, 32: 2.4}, "test curve")
    choice = choose_budget(ea, (4, 8, 16, 32), tau_curve=curve, calibrate_with_prompts=False)
    # τ / cost: 4 -> 1.36, 8 -> 1.58, 16 -> 1.47, 32 -> 1.09
    assert choice.total_token == 8 and choice.tau_source == "test curve"
    assert choice.score[8] == pytest.approx(1.9 / 1.2) and choice.round_steps[32] == pytest.approx(2.2)
    assert json.loads(json.dumps(choice.as_dict()))["tau"]["16"] == 2.2
    prior = choose_budget(ea, (4, 8, 16, 32), calibrate_with_prompts=False)
    assert "prior" in prior.tau_source and isinstance(prior, BudgetChoice)


def test_auto_budget_reads_the_heads_card(tmp_path, monkeypatch):
    monkeypatch.setattr(budget_module, "forward_costs", fake_table)
    from tests.helpers.tiny_models import save_tiny_base, save_tiny_head

    base_dir = save_tiny_base(tmp_path / "base")
    head_dir = save_tiny_head(base_dir, tmp_path / "head")
    (head_dir / "README.md").write_text(CARD)
    ea = EaModel.from_pretrained(str(base_dir), str(head_dir), total_token=-1, depth=2, top_k=2)
    assert ea.budget_choice.tau_source.startswith("head model card") and ea.total_token in (4, 8, 16, 32)
    assert ea.drafter.total_token == ea.total_token and ea._target.fast.rows == ea.total_token
    assert ea.budget_choice.draft_steps > 0, "the calibration run measured drafting"


def test_auto_budget_end_to_end_is_lossless():
    base = build_base("llama", vocab=len(build_tiny_tokenizer()))
    ea = EaModel.from_base_model(base, build_tiny_tokenizer(), seed=0, total_token=-1, depth=2, top_k=3)
    assert ea.total_token in CANDIDATE_BUDGETS and ea.budget_choice.tau_source.startswith("calibration")
    assert set(ea.budget_choice.tau) == set(CANDIDATE_BUDGETS)
    prompt = random_prompt(1, base.config.vocab_size)
    assert torch.equal(ea.eagenerate(prompt, max_new_tokens=10), hf_greedy(base, prompt, 10))


def test_depth_is_chosen_with_the_budget(monkeypatch):
    """A shallower tree that accepts almost as much but drafts with fewer forwards wins; never deeper than asked."""
    monkeypatch.setattr(budget_module, "forward_costs", fake_table)
    seen = []

    def fake_calibrate(ea, budgets, *args, depth=None, **kwargs):
        seen.append(depth)
        gain = {1: 0.30, 2: 0.36, 3: 0.38}[depth]  # deeper trees accept a little more ...
        forwards = ea.drafter.forwards_per_round if depth is None else depth
        return {"tau": {n: 1 + gain * (1 + n / 64) for n in budgets}, "draft_s": 0.05 * depth,  # ... but cost more
                "bookkeeping_s": 0.0, "rounds": 9, "forwards": depth}

    monkeypatch.setattr(budget_module, "calibrate", fake_calibrate)
    ea = EaModel.from_base_model(build_base("llama"), seed=0, total_token=8, depth=3, top_k=2)
    choice = choose_budget(ea, (4, 8, 16))
    assert sorted(seen) == [1, 2, 3] and set(choice.score_by_depth) == {1, 2, 3}
    best = max((s, d) for d, by_n in choice.score_by_depth.items() for s in by_n.values())
    assert choice.depth == best[1] == 1 and choice.score == choice.score_by_depth[1]
    assert json.loads(json.dumps(choice.as_dict()))["score_by_depth"]["2"]["8"] == choice.score_by_depth[2][8]
    seen.clear()
    shallow = EaModel.from_base_model(build_base("llama"), seed=0, total_token=8, depth=1, top_k=2)
    assert choose_budget(shallow, (4, 8)).depth == 1 and seen == [1], "never deeper than the requested depth"


def test_auto_budget_builds_the_drafter_at_the_chosen_depth():
    base = build_base("llama", vocab=len(build_tiny_tokenizer()))
    ea = EaModel.from_base_model(base, build_tiny_tokenizer(), seed=0, total_token=-1, depth=4, top_k=3)
    choice = ea.budget_choice
    assert choice.depth in (1, 2, 3, 4) and set(choice.score_by_depth) == {1, 2, 3, 4}
    assert ea.depth == ea.drafter.depth == choice.depth and ea.drafter.total_token == choice.total_token
    prompt = random_prompt(1, base.config.vocab_size)
    assert torch.equal(ea.eagenerate(prompt, max_new_tokens=10), hf_greedy(base, prompt, 10))


def test_a_tree_predicted_slower_than_plain_decoding_is_said(monkeypatch, capsys):
    monkeypatch.setattr(budget_module, "forward_costs", fake_table)
    ea = EaModel.from_base_model(build_base("llama"), seed=0, total_token=8, depth=2, top_k=2)
    slow = choose_budget(ea, (4, 8), tau_curve=({4: 1.05, 8: 1.1}, "weak head"), calibrate_with_prompts=False)
    assert max(slow.score.values()) < 1 and "predicted at 0.95x plain decoding" in capsys.readouterr().err
    choose_budget(ea, (4, 8), tau_curve=({4: 1.5, 8: 1.9}, "good head"), calibrate_with_prompts=False)
    assert "predicted at" not in capsys.readouterr().err
