"""Jakiro* drafting: children are the merged per-expert candidates (recomputed independently along every path
with plain causal forwards), each child continues from its own expert's feature, and the experts really
give different children (the decoupling happens)."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.ea_model import EaModel
from jakiro.model.tree import CandidatePool
from jakiro_star.model.drafter import DecouplingStats, JakiroStarDrafter, merge_expert_candidates
from tests.utils import decouple_experts, random_prompt, start_drafter


def reference_merge(rankings: list[list[int]], order: list[int], width: int) -> list[tuple[int, int]]:
    """(token, expert): the experts take turns in ``order``, each offering its next-best token not yet taken."""
    taken, merged, rank = set(), [], 0
    while len(merged) < width:
        for expert in order:
            token = rankings[expert][rank]
            if token not in taken and len(merged) < width:
                taken.add(token)
                merged.append((token, expert))
        rank += 1
    return merged


def test_merge_interleaves_experts_and_skips_duplicates():
    logp = torch.log_softmax(torch.tensor([[[0.0, 3.0, 1.0, 4.0, 2.0, -1.0]],     # expert 0 ranks 3, 1, 4, 2, 0, 5
                                           [[1.0, 5.0, 3.0, -2.0, 0.0, 4.0]]]), -1)  # expert 1 ranks 1, 5, 2, 0, 4, 3
    ids, scores, owner = merge_expert_candidates(logp, torch.tensor([[1, 0]]), 4)  # expert 1 dominant
    assert ids.tolist() == [[1, 3, 5, 2]] and owner.tolist() == [[1, 0, 1, 1]]  # expert 0's 1 is a duplicate
    assert torch.allclose(scores[0], torch.stack([logp[1, 0, 1], logp[0, 0, 3], logp[1, 0, 5], logp[1, 0, 2]]))
    ids, _, owner = merge_expert_candidates(logp, torch.tensor([[0, 1]]), 3)
    assert ids.tolist() == [[3, 1, 5]] and owner.tolist() == [[0, 1, 1]]  # expert 1's 1 is a duplicate


def test_merge_of_identical_experts_is_the_dominant_ranking():
    logp = torch.log_softmax(torch.randn(1, 3, 20), -1).expand(2, 3, 20)
    ids, _, owner = merge_expert_candidates(logp, torch.tensor([[0, 1], [1, 0], [0, 1]]), 5)
    assert torch.equal(ids, logp[0].topk(5).indices)
    assert owner.tolist() == [[0] * 5, [1] * 5, [0] * 5]


class ExpertPaths:
    """Per-expert draft outputs recomputed along a path with one plain causal forward (no cache, no tree mask).

    The node reached by ``path`` = ((token, expert), ...) reads, at each step, the output of the expert that
    proposed it at its parent's position."""

    def __init__(self, head, features, tokens):
        self.head, self.features, self.tokens = head, features, tokens  # [n, H], [n] (shifted ids + root)
        self.memo = {}

    @torch.no_grad()
    def step(self, path: tuple[tuple[int, int], ...]):
        if path not in self.memo:
            feats = [self.features] + [self.step(path[:i])[0][path[i][1]][None] for i in range(len(path))]
            toks = torch.cat((self.tokens, torch.tensor([t for t, _ in path], dtype=torch.long)))
            out = self.head.expert_step(torch.cat(feats)[None], toks[None])
            self.memo[path] = (out.features[:, 0, -1], out.gate_logits[0, -1])
        return self.memo[path]

    def children(self, path, width: int) -> list[tuple[int, int]]:
        features, gate = self.step(path)
        logp = torch.log_softmax(self.head.logits(features).float(), -1)
        rankings = [logp[e].argsort(descending=True, stable=True).tolist() for e in range(len(logp))]
        order = gate.float().argsort(descending=True, stable=True).tolist()
        return reference_merge(rankings, order, width), logp


def propose_checked(ea, base, prompt, rounds: int):
    """Start the drafter (and for rounds=2 feed it one accepted round); return the next tree, experts and context."""
    drafter = ea.drafter
    ids, feats = start_drafter(ea, base, prompt, rounds)
    experts = []
    original = drafter.decoupling.record
    drafter.decoupling.record = lambda tree, owners: experts.append(owners) or original(tree, owners)
    tree = drafter.propose(ids[-1])
    return tree, experts[0], ExpertPaths(ea.ea_layer, feats, torch.tensor(ids[1:]))


CASES = [
    ("static-full", dict(), 1),
    ("static-full-round2", dict(), 2),
    ("static-budget10", dict(total_token=10), 2),
    ("static-choices", dict(tree_choices=[[0], [1], [2], [0, 0], [0, 1], [2, 0], [0, 0, 0], [0, 1, 0]]), 2),
    ("dynamic", dict(tree="dynamic", total_token=40, depth=3, top_k=4), 1),
    ("dynamic-round2-3experts", dict(tree="dynamic", total_token=30, depth=3, top_k=3, num_experts=3), 2),
]


@pytest.mark.parametrize("name,options,rounds", CASES, ids=[c[0] for c in CASES])
def test_children_are_the_merged_expert_candidates(tiny_base, monkeypatch, name, options, rounds):
    base = tiny_base("llama", logit_scale=8.0)
    ea = EaModel.from_base_model(base, seed=2, method="jakiro_star", draft_dtype="float32", **options)
    decouple_experts(ea)
    prompt = random_prompt(3, base.config.vocab_size, low=4)
    pools = []
    select = CandidatePool.select
    monkeypatch.setattr(CandidatePool, "select", lambda pool, budget: pools.append(pool) or select(pool, budget))
    tree, owners, paths = propose_checked(ea, base, prompt, rounds)
    drafter = ea.drafter
    assert drafter.stable == len(paths.tokens)  # the draft KV now covers every committed position
    tokens, parents = tree.tokens.tolist(), tree.parents.tolist()
    node_path = {0: ()}
    for node in range(1, len(tree)):
        node_path[node] = node_path[parents[node]] + ((tokens[node], owners[node]),)
    dynamic_scores = {0: 0.0}
    for parent in range(len(tree)):
        children = tree.children(parent)
        if not children:
            continue
        width = len(children) if drafter.shape is not None else drafter.top_k
        merged, logp = paths.children(node_path[parent], width)
        got = [(tokens[c], owners[c]) for c in children]
        if drafter.shape is not None:  # static: child of rank j = the j-th merged candidate
            ranks = [drafter.shape.ranks[c] for c in children]
            assert got == [merged[r] for r in ranks], (name, parent)
        else:  # dynamic: the kept children are merged candidates; scores add the proposing expert's log-prob
            assert set(got) <= set(merged), (name, parent)
            for c in children:
                dynamic_scores[c] = dynamic_scores[parent] + float(logp[owners[c], tokens[c]])
    if drafter.shape is not None:
        assert len(tree) == len(drafter.shape) and tree.parents.tolist() == list(drafter.shape.parents)
    else:  # every kept node's score is its path's sum of own-expert log-probs; the kept ones are the pool's best
        pool = pools[-1]
        pool_scores = torch.cat(pool._scores)
        kept = pool_scores[pool.chosen]
        for node in range(1, len(tree)):
            assert abs(float(kept[node - 1]) - dynamic_scores[node]) < 1e-4, (name, node)
        assert len(tree) == ea.total_token and float(kept.min()) >= float(pool_scores.sort(descending=True).values[len(kept) - 1])


def test_two_experts_give_different_children(tiny_base):
    """On a decoupled head the children of one node come from both experts, and they differ from what
    either expert alone would draft: the tree is not one expert's top-k."""
    base = tiny_base("llama", logit_scale=8.0)
    ea = EaModel.from_base_model(base, seed=2, method="jakiro_star", total_token=60, draft_dtype="float32")
    decouple_experts(ea)
    prompt = random_prompt(4, base.config.vocab_size, low=4)
    tree, owners, paths = propose_checked(ea, base, prompt, 1)
    root_children = tree.children(0)
    assert len({owners[c] for c in root_children}) == 2
    features, _ = paths.step(())
    alone = [set(ea.ea_layer.logits(features[e]).topk(len(root_children)).indices.tolist()) for e in range(2)]
    drafted = {int(tree.tokens[c]) for c in root_children}
    assert drafted != alone[0] and drafted != alone[1]
    stats = ea.drafter.decoupling
    assert stats.rounds == 1 and stats.mixed_sibling_groups >= 1 and 0 < stats.mixed_level_share <= 1
    assert sum(stats.nodes_per_expert) == len(tree) - 1 and min(stats.nodes_per_expert) > 0


def test_decoupling_stats_count_levels_and_sibling_groups():
    from jakiro.model.tree import DraftTree

    tree = DraftTree(torch.arange(7), torch.tensor([-1, 0, 0, 1, 1, 2, 5]))
    stats = DecouplingStats()
    stats.record(tree, [-1, 0, 1, 0, 0, 1, 1])
    # levels with >= 2 nodes: depth 1 {0,1} mixed, depth 2 {0,0,1} mixed; sibling groups: root {0,1}, node 1 {0,0}
    assert (stats.levels, stats.mixed_levels, stats.sibling_groups, stats.mixed_sibling_groups) == (2, 2, 2, 1)
    assert stats.nodes_per_expert == [3, 3] and stats.as_dict()["mixed_sibling_share"] == 0.5


def test_forwards_depth_and_errors(tiny_base):
    base = tiny_base("llama")
    ea = EaModel.from_base_model(base, seed=0, method="jakiro_star")
    assert ea.drafter.forwards_per_round == 6 and ea.drafter.max_path_drafts == 6 and ea.drafter.tree_entries == 11
    flat = EaModel.from_base_model(base, seed=0, method="jakiro_star", total_token=5)  # the 4 root children only
    assert len(flat.drafter.shape) == 5 and flat.drafter.forwards_per_round == 1 and flat.drafter.tree_entries == 0
    small = EaModel.from_base_model(base, seed=0, method="jakiro_star", total_token=6)
    assert small.drafter.forwards_per_round == 2 and small.drafter.max_path_drafts == 2
    dynamic = EaModel.from_base_model(base, seed=0, method="jakiro_star", tree="dynamic", depth=4)
    assert dynamic.drafter.forwards_per_round == 5 and dynamic.drafter.max_path_drafts == 5
    assert dynamic.drafter.chooses_depth and not ea.drafter.chooses_depth
    capped = EaModel.from_base_model(base, seed=0, method="jakiro_star", tree="dynamic", depth=4, total_token=4)
    assert capped.drafter.levels_drafted == 2 and capped.drafter.forwards_per_round == 3, "3 draft nodes: 3 levels"
    head = ea.ea_layer
    for bad, fragment in ((dict(tree="wide"), "unknown tree"), (dict(total_token=1), "total_token"),
                          (dict(tree="dynamic", tree_choices=[[0]]), "tree_choices"),
                          (dict(tree_choices=[[0], [0, 0, 1]]), "no parent")):
        with pytest.raises(ConfigError, match=fragment):
            JakiroStarDrafter(head, **bad)


@pytest.mark.parametrize("tree", ["static", "dynamic"])
def test_bf16_draft_copy_stays_lossless(tiny_base, tree):
    """Jakiro* drafts with the head's bf16 copy (as Jakiro's drafter does); verification keeps the output exact."""
    from tests.utils import hf_greedy

    base = tiny_base("llama", logit_scale=8.0)
    ea = EaModel.from_base_model(base, seed=2, method="jakiro_star", tree=tree, total_token=12, depth=3, top_k=3,
                                 draft_dtype="bfloat16")
    decouple_experts(ea)  # after construction: the copy must follow the head's new weights
    for seed in range(2):
        prompt = random_prompt(seed, base.config.vocab_size, low=4)
        assert torch.equal(ea.eagenerate(prompt, max_new_tokens=16), hf_greedy(base, prompt, 16))
    assert ea.drafter.draft_dtype == torch.bfloat16 and ea.drafter.model is not ea.ea_layer
    assert ea.drafter.pending_features.dtype == ea.drafter._copy.activation_dtype
