"""DraftTree / CandidatePool invariants on hand-built candidate pools."""

from __future__ import annotations

import pytest
import torch

from jakiro.model.tree import CandidatePool, DraftTree


def grow_pool(k: int, depth: int, seed: int, vocab: int = 50, quantised: bool = False):
    """Grow a pool the way EAGLE-2 does (expand the k best nodes of every level into k children each).

    Tokens are unique (pool index + 1) so tree nodes can be mapped back to pool entries. With
    ``quantised`` the log-probs are rounded to whole nats (0 included), producing many exact ties,
    also between a child and its parent.
    """
    gen = torch.Generator().manual_seed(seed)

    def top_logp(rows):
        logp = torch.log_softmax(torch.randn(rows, vocab, generator=gen) * 3, dim=-1)
        if quantised:
            logp = logp.round().clamp(max=0.0)
        return logp.topk(k, dim=-1).values

    pool = CandidatePool(root_token=0)
    scores_all, parents_all = [], []

    def add(scores, parents):
        start = pool.size
        tokens = torch.arange(start + 1, start + 1 + scores.numel())
        idx = pool.add(tokens, scores, parents)
        scores_all.extend(scores.flatten().tolist())
        parents_all.extend(parents.flatten().tolist())
        return idx

    scores = top_logp(1)[0]
    nodes = add(scores, torch.full((k,), -1))
    for _ in range(depth):
        cumulative = scores[:, None] + top_logp(k)
        children = add(cumulative, nodes[:, None].expand(k, k)).view(k, k)
        scores, best = cumulative.flatten().topk(k)
        nodes = children.flatten()[best]
    return pool, scores_all, parents_all


def check_tree(tree: DraftTree) -> None:
    parents = tree.parents.tolist()
    size = len(tree)
    assert parents[0] == -1 and all(0 <= p < i for i, p in enumerate(parents) if i)
    for i in range(size):
        ancestors, node = {i}, i
        while parents[node] != -1:
            node = parents[node]
            ancestors.add(node)
        assert 0 in ancestors  # connected: every node reaches the root
        assert set(tree.ancestor_mask[i].nonzero().flatten().tolist()) == ancestors
        assert int(tree.depths[i]) == len(ancestors) - 1  # position offset = depth
        assert tree.path_to(i) == sorted(ancestors)
    paths = tree.retrieve_indices()
    assert paths.shape[1] == tree.max_depth + 1
    leaves = [i for i in range(size) if not tree.children(i)]
    assert sorted(row[row >= 0][-1].item() for row in paths) == leaves
    for row in paths.tolist():
        real = [n for n in row if n >= 0]
        assert row == real + [-1] * (len(row) - len(real))  # right-padded
        assert real[0] == 0 and all(parents[b] == a for a, b in zip(real, real[1:]))  # root-to-leaf path
        assert tree.children(real[-1]) == []
    for i in range(1, size):
        assert i in tree.children(parents[i])


@pytest.mark.parametrize("k,depth,budget,seed", [(1, 1, 1, 0), (2, 3, 5, 1), (4, 5, 20, 2), (10, 5, 59, 3),
                                                  (10, 5, 600, 4), (3, 6, 12, 5)])
@pytest.mark.parametrize("quantised", [False, True], ids=["distinct", "ties"])
def test_select_gives_connected_best_tree(k, depth, budget, seed, quantised):
    pool, scores, parents = grow_pool(k, depth, seed, quantised=quantised)
    assert pool.size == k + depth * k * k
    tree = pool.select(budget)
    expected_size = min(budget, pool.size) + 1
    assert len(tree) == expected_size
    check_tree(tree)
    chosen = [int(t) - 1 for t in tree.tokens[1:]]
    assert chosen == sorted(chosen)  # pool (topological) order kept
    # tree parents are the pool parents
    for node, index in enumerate(chosen, start=1):
        parent = parents[index]
        assert int(tree.parents[node]) == (0 if parent == -1 else chosen.index(parent) + 1)
    # the kept candidates are the best by score
    left = [s for i, s in enumerate(scores) if i not in set(chosen)]
    if left:
        assert min(scores[i] for i in chosen) >= max(left)
    if quantised:
        assert len(set(scores)) < len(scores)  # the ties really happened


def test_all_equal_scores_still_connected():
    pool = CandidatePool(root_token=7)
    a = pool.add(torch.tensor([1, 2, 3]), torch.zeros(3), torch.full((3,), -1))
    b = pool.add(torch.tensor([4, 5, 6, 7, 8, 9]), torch.zeros(6), a.repeat_interleave(2))
    pool.add(torch.tensor([10, 11, 12]), torch.zeros(3), b[[5, 0, 3]])
    for budget in range(1, 13):
        tree = pool.select(budget)
        assert len(tree) == budget + 1 and int(tree.tokens[0]) == 7
        check_tree(tree)


def test_select_refuses_disconnected_selection():
    pool = CandidatePool(root_token=0)
    parent = pool.add(torch.tensor([1, 2]), torch.tensor([-5.0, -1.0]), torch.full((2,), -1))
    pool.add(torch.tensor([3]), torch.tensor([-0.5]), parent[:1])  # a child outscoring its parent
    with pytest.raises(RuntimeError, match="disconnected"):
        pool.select(2)


def test_draft_tree_by_hand():
    #        0
    #      1   2
    #     3 4   5
    #           6
    tree = DraftTree(tokens=torch.tensor([9, 10, 11, 12, 13, 14, 15]), parents=torch.tensor([-1, 0, 0, 1, 1, 2, 5]))
    check_tree(tree)
    assert tree.depths.tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert tree.retrieve_indices().tolist() == [[0, 1, 3, -1], [0, 1, 4, -1], [0, 2, 5, 6]]
    assert tree.ancestor_mask[6].tolist() == [True, False, True, False, False, True, True]
    assert tree.children(0) == [1, 2] and tree.max_depth == 3
    single = DraftTree(tokens=torch.tensor([4]), parents=torch.tensor([-1]))
    assert single.retrieve_indices().tolist() == [[0]]


@pytest.mark.parametrize("parents", [[0, 0], [-1, 1], [-1, 0, 3, 1], [-1, -1]])
def test_draft_tree_rejects_bad_order(parents):
    with pytest.raises(ValueError, match="topological"):
        DraftTree(tokens=torch.arange(len(parents)), parents=torch.tensor(parents))
