"""Static draft trees (EAGLE-1 "choices"): a fixed tree shape, filled with tokens by any drafter each round.

A shape is a list of paths; path ``(0, 2, 1)`` is the node reached by taking, from the root, its
best candidate (rank 0), then that node's third-best (rank 2), then its second-best (rank 1).
Nodes are ordered as EAGLE-1 orders them (by depth, then lexicographically), which is a
topological order, so a budget of ``n`` nodes simply keeps the first ``n`` (still a connected tree).
A drafter asks the shape which nodes to expand at each depth and how many ranked candidates each
needs, fills in the tokens, and turns them into the core's `DraftTree` with `draft_tree`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .tree import DraftTree

# Jakiro*'s tree (its `choices.py::mc_sim_7b_63`, redefined to 26 nodes of depth 6): 4, 8, 8, 3, 2, 1 nodes
# per level; the EAGLE-1 original is the same without the depth-6 node.
JAKIRO_STAR_CHOICES: tuple[tuple[int, ...], ...] = (
    (0,), (1,), (2,), (3,),
    (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0),
    (0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 2, 1), (1, 0, 0),
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2),
    (0, 0, 0, 0, 0), (0, 0, 0, 0, 1),
    (0, 0, 0, 0, 0, 0),
)


@dataclass(frozen=True)
class StaticTree:
    """A tree shape. Node 0 is the root; node ``i >= 1`` is ``paths[i - 1]``.

    ``parents[i]`` (-1 for the root), ``ranks[i]`` (which ranked candidate of its parent node i is; -1 for
    the root), ``depths[i]``.
    """

    paths: tuple[tuple[int, ...], ...]
    parents: tuple[int, ...] = field(init=False)
    ranks: tuple[int, ...] = field(init=False)
    depths: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        index = {path: i + 1 for i, path in enumerate(self.paths)}
        parents, ranks = [-1], [-1]
        for path in self.paths:
            parents.append(index.get(path[:-1], 0) if len(path) > 1 else 0)
            ranks.append(path[-1])
        object.__setattr__(self, "parents", tuple(parents))
        object.__setattr__(self, "ranks", tuple(ranks))
        object.__setattr__(self, "depths", (0,) + tuple(len(p) for p in self.paths))

    @classmethod
    def from_choices(cls, choices: Iterable[Sequence[int]]) -> "StaticTree":
        """Validate and order a list of paths (lists or tuples of candidate ranks)."""
        try:
            paths = [tuple(int(r) for r in path) for path in choices]
        except (TypeError, ValueError):
            raise ConfigError("tree choices must be a list of paths, each a list of candidate ranks (ints)") from None
        if not paths:
            raise ConfigError("tree choices are empty: give at least one path, e.g. [[0]]")
        bad = [p for p in paths if not p or min(p) < 0]
        if bad:
            raise ConfigError(f"tree choice {list(bad[0])} is invalid: every path is a non-empty list of ranks >= 0")
        if len(set(paths)) != len(paths):
            raise ConfigError("tree choices list a path twice: give each node once")
        known = set(paths)
        orphans = [p for p in paths if len(p) > 1 and p[:-1] not in known]
        if orphans:
            raise ConfigError(f"tree choice {list(orphans[0])} has no parent {list(orphans[0][:-1])}: "
                              "list every prefix of every path")
        return cls(tuple(sorted(paths, key=lambda p: (len(p), p))))

    def __len__(self) -> int:
        """Nodes including the root."""
        return len(self.paths) + 1

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def truncated(self, nodes: int) -> "StaticTree":
        """The first ``nodes`` non-root nodes (a tree budget of ``nodes + 1`` tokens)."""
        if nodes < 1:
            raise ConfigError(f"a static tree needs at least one node below the root, got a budget of {nodes}")
        return self if nodes >= len(self.paths) else StaticTree(self.paths[:nodes])

    def children(self, node: int) -> list[int]:
        return [i for i in range(1, len(self)) if self.parents[i] == node]

    def width(self, node: int) -> int:
        """Ranked candidates node ``node`` must produce (its highest child rank + 1; 0 for a leaf)."""
        return max((self.ranks[c] + 1 for c in self.children(node)), default=0)

    def expanded(self, depth: int) -> list[int]:
        """Nodes at ``depth`` that have children (the draft inputs of the next level), in node order."""
        return [i for i in range(len(self)) if self.depths[i] == depth and self.width(i) > 0]

    def ancestor_mask(self) -> torch.Tensor:
        """[N, N] boolean: row i marks the ancestors of node i and i itself."""
        return DraftTree(torch.zeros(len(self), dtype=torch.long), torch.tensor(self.parents)).ancestor_mask

    def draft_tree(self, tokens: torch.Tensor) -> DraftTree:
        """The core's `DraftTree` of this shape holding ``tokens`` [N] (root first, in node order)."""
        if tokens.numel() != len(self):
            raise ValueError(f"{tokens.numel()} tokens for a static tree of {len(self)} nodes")
        return DraftTree(tokens=tokens.flatten(), parents=torch.tensor(self.parents, device=tokens.device))


def named_tree(name_or_choices: str | Iterable[Sequence[int]]) -> StaticTree:
    """A static tree by name (``"jakiro_star"``) or from explicit choices."""
    if isinstance(name_or_choices, str):
        if name_or_choices not in STATIC_TREES:
            raise ConfigError(f"unknown static tree {name_or_choices!r}: use one of {', '.join(STATIC_TREES)} "
                              "or pass the paths themselves")
        return StaticTree.from_choices(STATIC_TREES[name_or_choices])
    return StaticTree.from_choices(name_or_choices)


STATIC_TREES: dict[str, tuple[tuple[int, ...], ...]] = {"jakiro_star": JAKIRO_STAR_CHOICES}
