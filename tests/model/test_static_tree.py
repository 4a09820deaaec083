"""Static trees: the original Jakiro* layout node for node, ordering, truncation by budget, and bad choices."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.static_tree import JAKIRO_STAR_CHOICES, STATIC_TREES, StaticTree, named_tree


def test_jakiro_star_layout_matches_the_original():
    """methods.md 3.2: 26 nodes + root, 4, 8, 8, 3, 2, 1 nodes per level, each node's parent its path prefix."""
    tree = named_tree("jakiro_star")
    assert len(tree) == 27 and tree.max_depth == 6
    assert [tree.depths.count(d) for d in range(1, 7)] == [4, 8, 8, 3, 2, 1]
    expected = {1: [(0,), (1,), (2,), (3,)],
                2: [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)],
                3: [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 2, 1), (1, 0, 0)],
                4: [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2)],
                5: [(0, 0, 0, 0, 0), (0, 0, 0, 0, 1)],
                6: [(0, 0, 0, 0, 0, 0)]}
    for depth, paths in expected.items():
        assert [p for p in tree.paths if len(p) == depth] == paths
    # parents by hand: [0,0] -> [0] (node 1), [1,1] -> [1] (node 2), [1,0,0] -> [1,0] (node 8), [0,0,0,0,0,0] -> its prefix
    node = {path: i + 1 for i, path in enumerate(tree.paths)}
    for path in tree.paths:
        assert tree.parents[node[path]] == (node[path[:-1]] if len(path) > 1 else 0)
        assert tree.ranks[node[path]] == path[-1]
    assert tree.parents[:9] == (-1, 0, 0, 0, 0, 1, 1, 1, 2)
    assert tree.parents[node[(1, 0, 0)]] == node[(1, 0)] == 8
    # children needed per expanded node; expanded nodes per depth (5 draft forwards below the root, like the original)
    assert [tree.width(n) for n in tree.expanded(0)] == [4]
    assert [len(tree.expanded(d)) for d in range(6)] == [1, 4, 4, 1, 1, 1]
    assert [tree.width(n) for n in tree.expanded(1)] == [3, 2, 2, 1]
    assert STATIC_TREES["jakiro_star"] == JAKIRO_STAR_CHOICES


def test_draft_tree_and_ancestors():
    tree = named_tree("jakiro_star")
    tokens = torch.arange(100, 127)
    draft = tree.draft_tree(tokens)
    assert draft.tokens.tolist() == tokens.tolist() and draft.parents.tolist() == list(tree.parents)
    assert draft.depths.tolist() == list(tree.depths) and draft.max_depth == 6
    assert torch.equal(draft.ancestor_mask, tree.ancestor_mask())
    assert draft.retrieve_indices().shape == (len([n for n in range(27) if not draft.children(n)]), 7)
    with pytest.raises(ValueError):
        tree.draft_tree(torch.arange(5))


def test_choices_are_sorted_and_truncated_as_eagle1():
    tree = StaticTree.from_choices([[1, 0], [0, 0, 0], [1], [0], [0, 0]])
    assert tree.paths == ((0,), (1,), (0, 0), (1, 0), (0, 0, 0))
    cut = tree.truncated(3)
    assert cut.paths == ((0,), (1,), (0, 0)) and len(cut) == 4
    assert tree.truncated(50) is tree
    with pytest.raises(ConfigError):
        tree.truncated(0)


@pytest.mark.parametrize("choices,fragment", [
    ([], "empty"), ([[0], [0]], "twice"), ([[0], [0, 1, 0]], "no parent"), ([[0], [-1]], "ranks >= 0"),
    ([[0], []], "non-empty"), ([["a"]], "ranks"), ("xyz", "unknown static tree"),
])
def test_bad_choices_are_one_line_errors(choices, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        named_tree(choices)
    assert "\n" not in str(info.value)
