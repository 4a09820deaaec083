"""TreeDrafter: every candidate's score equals an independent recomputation along its path (causal draft
forwards without cache), the growth expands exactly the k best nodes per level, and CEPD's last level is
drafted from the contrastive output of each node's grandparent (or, behind the legacy flag, misaligned)."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.ea_model import EaModel
from jakiro.model.tree import CandidatePool
from jakiro.model.tree_drafter import TreeDrafter
from tests.utils import random_prompt, start_drafter


class PoolRecorder:
    def __init__(self, monkeypatch):
        self.calls = []
        original = CandidatePool.add

        def add(pool, tokens, scores, parents):
            self.calls.append((tokens.flatten().clone(), scores.flatten().clone(), parents.flatten().clone()))
            return original(pool, tokens, scores, parents)

        monkeypatch.setattr(CandidatePool, "add", add)

    def pool(self):
        tokens, scores, parents = (torch.cat(x).tolist() for x in zip(*self.calls))
        return tokens, scores, parents


def draft_index(head, token: int) -> int:
    if head.d2t is None:
        return token
    return int((head.d2t == token).nonzero()[0, 0])


class PathOracle:
    """Draft outputs recomputed along a path with plain causal forwards (no cache, no tree mask)."""

    def __init__(self, head, features, tokens):
        self.head, self.features, self.tokens = head, features, tokens  # [n, H], [n] (shifted ids + root)
        self.memo = {}

    @torch.no_grad()
    def output(self, path: tuple[int, ...], branch: str = "mix") -> torch.Tensor:
        """Output at the position of the last node of ``path`` (``()`` = the root's position)."""
        key = (path, branch)
        if key not in self.memo:
            feats = [self.features] + [self.output(path[:i])[None] for i in range(len(path))]
            toks = torch.cat((self.tokens, torch.tensor(path, dtype=torch.long)))
            self.memo[key] = self.head(torch.cat(feats)[None], toks[None], branches=branch)[0, -1]
        return self.memo[key]

    def logp(self, path, branch="mix") -> torch.Tensor:
        return torch.log_softmax(self.head.logits(self.output(path, branch)).float(), dim=-1)


def node_paths(tokens, parents):
    paths = []
    for i, parent in enumerate(parents):
        paths.append((paths[parent] if parent >= 0 else ()) + (tokens[i],))
    return paths


# (id, options, rounds run before the checked one, head seed). The legacy cases use head seeds whose
# level-`depth` selection is not row-aligned with its parents (else both rules coincide).
CASES = [
    ("cepd-d3", dict(total_token=40, depth=3, top_k=4), 1, 1),
    ("cepd-d1", dict(total_token=8, depth=1, top_k=3), 1, 1),
    ("cepd-d2-round2", dict(total_token=30, depth=2, top_k=5), 2, 1),
    ("cepd-d4-round2", dict(total_token=60, depth=4, top_k=3), 2, 2),
    ("cepd-d4-legacy", dict(total_token=60, depth=4, top_k=3, legacy_cepd_alignment=True), 2, 2),
    ("cepd-d2-legacy", dict(total_token=60, depth=2, top_k=4, legacy_cepd_alignment=True), 1, 2),
    ("nocepd-d3", dict(total_token=20, depth=3, top_k=3, cepd=False), 2, 1),
    ("eagle2-d4-draftvocab", dict(total_token=50, depth=4, top_k=4, num_experts=1, draft_vocab_size=40), 2, 1),
    ("cepd-d3-3experts-draftvocab", dict(total_token=50, depth=3, top_k=3, num_experts=3, draft_vocab_size=30), 1, 1),
]


@pytest.mark.parametrize("name,options,rounds,seed", CASES, ids=[c[0] for c in CASES])
def test_pool_matches_path_recomputation(tiny_base, monkeypatch, name, options, rounds, seed):
    base = tiny_base("llama", logit_scale=8.0)  # peaked distributions: varied scores
    ea = EaModel.from_base_model(base, seed=seed, draft_dtype="float32", **options)  # exact scores: the head's dtype
    head, drafter = ea.ea_layer, ea.drafter
    if head.d2t is not None:  # a non-trivial draft vocabulary: a random subset in random order
        head.d2t = torch.randperm(base.config.vocab_size, generator=torch.Generator().manual_seed(0))[: len(head.d2t)]
        head.refresh_head()
    prompt = random_prompt(3, base.config.vocab_size, low=4)
    ids, feats = start_drafter(ea, base, prompt, rounds)

    forwards = []
    original_forward = head.forward
    monkeypatch.setattr(head, "forward", lambda *a, **kw: forwards.append(1) or original_forward(*a, **kw))
    recorder = PoolRecorder(monkeypatch)
    tree = drafter.propose(ids[-1])
    assert len(forwards) == drafter.forwards_per_round == (ea.depth if drafter.cepd else ea.depth + 1)
    assert drafter.stable == len(ids) - 1  # draft KV now covers every committed position

    k, depth = min(ea.top_k, head.draft_vocab_size), ea.depth
    tokens, scores, parents = recorder.pool()
    assert len(tokens) == k + depth * k * k
    assert len(tree) == min(ea.total_token, len(tokens) + 1)
    levels = [0] * len(tokens)
    for i, p in enumerate(parents):
        levels[i] = 1 if p < 0 else levels[p] + 1
    paths = node_paths(tokens, parents)
    oracle = PathOracle(head, feats, torch.tensor(ids[1:]))
    legacy = drafter.cepd and drafter.legacy_cepd_alignment and depth > 1

    # frontier rows of the forward that produced level `depth` (row r = input node r), for the legacy rule
    level_d = [i for i in range(len(tokens)) if levels[i] == depth]
    frontier = [parents[i] for i in level_d[::k]]
    level_last = [i for i in range(len(tokens)) if levels[i] == depth + 1]
    misaligned = 0
    for i, token in enumerate(tokens):
        parent_path = paths[parents[i]] if parents[i] >= 0 else ()
        base_score = scores[parents[i]] if parents[i] >= 0 else 0.0
        if drafter.cepd and levels[i] == depth + 1:
            grand = parent_path[:-1]  # the contrastive output two steps back drafts this node
            expected = base_score + oracle.logp(grand, "contrastive")[draft_index(head, token)]
            if legacy:
                row = level_last.index(i) // k
                row_path = paths[frontier[row]] if frontier[row] >= 0 else ()
                wrong = base_score + oracle.logp(row_path, "contrastive")[draft_index(head, token)]
                misaligned += abs(float(wrong) - float(expected)) > 1e-3
                expected = wrong
        else:
            expected = base_score + oracle.logp(parent_path)[draft_index(head, token)]
        assert abs(scores[i] - float(expected)) < 1e-4, (i, levels[i])

    # every expanded node's children are the top-k tokens of its (mix / contrastive) distribution, and the
    # expanded nodes of each level are that level's k best
    for level in range(1, depth + 1):
        members = [i for i in range(len(tokens)) if levels[i] == level]
        expanded = sorted({parents[i] for i in range(len(tokens)) if levels[i] == level + 1})
        best = sorted(sorted(members, key=lambda i: -scores[i])[:k])
        assert expanded == best
    for parent in sorted(set(parents)):
        children = {tokens[i] for i in range(len(tokens)) if parents[i] == parent}
        assert len(children) == k
    if legacy:
        assert misaligned > 0  # the legacy rule really drafts from the wrong rows here


def test_forwards_per_round_and_errors(tiny_base):
    base = tiny_base("llama")
    ea = EaModel.from_base_model(base, seed=0, depth=4)
    assert ea.drafter.cepd and ea.drafter.forwards_per_round == 4
    assert TreeDrafter(ea.ea_layer, depth=4, cepd=False).forwards_per_round == 5
    for bad in (dict(depth=0), dict(top_k=0), dict(total_token=1), dict(total_token=0)):
        with pytest.raises(ConfigError):
            TreeDrafter(ea.ea_layer, **bad)
    eagle = EaModel.from_base_model(base, seed=0, num_experts=1)
    assert not eagle.drafter.cepd
    with pytest.raises(ConfigError, match="contrastive"):
        TreeDrafter(eagle.ea_layer, cepd=True)


@pytest.mark.parametrize("budget,depth", [(4, 3), (8, 5), (6, 1)])
def test_width_capped_by_the_budget_selects_the_same_tree(tiny_base, budget, depth):
    """Expanding more than total_token-1 nodes per level (or children per node) can never change the tree."""
    base = tiny_base("llama", logit_scale=8.0)
    prompt = random_prompt(4, base.config.vocab_size, low=4)
    trees = []
    for total_token in (budget, 60):
        ea = EaModel.from_base_model(base, seed=1, total_token=total_token, depth=depth, top_k=10,
                                     draft_dtype="float32")
        drafter = ea.drafter
        ids, _ = start_drafter(ea, base, prompt, rounds=2)
        tree = drafter.propose(ids[-1])
        if total_token == 60:  # the uncapped pool cut to the budget
            nodes = tree.budget_subset(budget).sort().values  # tree (pool) order
            tree = (tree.tokens[nodes].tolist(), [nodes.tolist().index(p) if p >= 0 else -1
                                                  for p in tree.parents[nodes].tolist()])
        else:
            assert drafter.width == min(10, budget - 1)
            tree = (tree.tokens.tolist(), tree.parents.tolist())
        trees.append(tree)
    assert trees[0] == trees[1]


@pytest.mark.parametrize("budget,depth,experts", [(4, 5, 2), (4, 5, 1), (3, 6, 2), (5, 6, 1)])
def test_levels_capped_by_the_budget_select_the_same_tree(tiny_base, budget, depth, experts):
    """Levels deeper than total_token-1 can never hold a selected node: drafting fewer levels keeps the tree."""
    base = tiny_base("llama", logit_scale=8.0)
    prompt = random_prompt(4, base.config.vocab_size, low=4)
    trees, forwards = [], []
    for cap in (True, False):
        ea = EaModel.from_base_model(base, seed=2, total_token=budget, depth=depth, top_k=10, num_experts=experts,
                                     draft_dtype="float32")
        drafter = ea.drafter
        if not cap:  # the same drafter drafting every level
            drafter.__class__ = type("Uncapped", (TreeDrafter,), {"levels_drafted": property(lambda s: s.depth)})
        ids, _ = start_drafter(ea, base, prompt, rounds=2)
        tree = drafter.propose(ids[-1])
        trees.append((tree.tokens.tolist(), tree.parents.tolist()))
        forwards.append(drafter.forwards_per_round)
    assert trees[0] == trees[1]
    assert forwards[0] < forwards[1] == (depth if experts == 2 else depth + 1)
    assert forwards[0] == budget - 1
