"""Draft trees: the candidate pool of EAGLE-2's dynamic growth and the tree handed to verification.

Nodes live in a pool in topological order (a parent always precedes its children). Each has a
token, a cumulative draft log-probability, and its parent's pool index (-1 = the root). The tree
verified by the target is the root plus the ``budget`` best nodes by score: since a child's score
never exceeds its parent's and a stable sort keeps parents ahead of children with equal scores,
the selection is always a connected tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DraftTree:
    """A tree of candidate tokens; node 0 is the root (the last token produced by the target).

    ``tokens`` [N], ``parents`` [N] (-1 for the root, otherwise the index of an earlier node).
    Derived: ``depths`` [N] (root 0), ``ancestor_mask`` [N, N] (row i = ancestors of i and i itself).
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    scores: torch.Tensor | None = None  # [N] cumulative draft log-probs (root +inf) where the drafter scored nodes
    depths: torch.Tensor = field(init=False)
    ancestor_mask: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        parents = self.parents.tolist()
        if parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(parents) if i):
            raise ValueError("tree nodes must be in topological order with node 0 as the only root")
        size = len(parents)
        mask = torch.eye(size, dtype=torch.bool)
        depths = [0] * size
        for i in range(1, size):
            mask[i] |= mask[parents[i]]
            depths[i] = depths[parents[i]] + 1
        self.ancestor_mask = mask.to(self.tokens.device)
        self.depths = torch.tensor(depths, device=self.tokens.device)
        self._children: list[list[int]] = [[] for _ in range(size)]
        for i in range(1, size):
            self._children[parents[i]].append(i)

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> list[int]:
        return self._children[node]

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root down to ``node`` (inclusive)."""
        return self.ancestor_mask[node].nonzero().flatten().tolist()

    @property
    def max_depth(self) -> int:
        return int(self.depths.max())

    def budget_subset(self, budget: int) -> torch.Tensor:
        """Nodes of the tree a budget of ``budget`` nodes (root included) would have drafted: the root and the
        ``budget - 1`` best-scored others (a stable sort, as `CandidatePool.select` ranks the pool, so a
        smaller budget's tree is exactly this subset). Needs ``scores``."""
        if self.scores is None:
            raise ValueError("this tree has no draft scores: its drafter does not rank candidates")
        order = torch.sort(self.scores[1:], descending=True, stable=True).indices[: max(budget - 1, 0)] + 1
        return torch.cat((torch.zeros(1, dtype=torch.long, device=order.device), order))

    def retrieve_indices(self) -> torch.Tensor:
        """Root-to-leaf paths [R, max_depth+1], right-padded with -1 (EAGLE's layout)."""
        leaves = [i for i in range(len(self)) if not self._children[i]]
        width = self.max_depth + 1
        rows = [self.path_to(leaf) + [-1] * (width - 1 - int(self.depths[leaf])) for leaf in leaves]
        return torch.tensor(rows, dtype=torch.long)


class CandidatePool:
    """Candidates gathered level by level while a drafter grows its tree."""

    def __init__(self, root_token: int, device: torch.device | str = "cpu"):
        self.root_token = root_token
        self.device = device
        self._tokens: list[torch.Tensor] = []
        self._scores: list[torch.Tensor] = []
        self._parents: list[torch.Tensor] = []
        self.size = 0

    def add(self, tokens: torch.Tensor, scores: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """Add candidates (flat tensors, parents as pool indices or -1); return their pool indices."""
        self._tokens.append(tokens.flatten())
        self._scores.append(scores.flatten().float())
        self._parents.append(parents.flatten())
        start, self.size = self.size, self.size + tokens.numel()
        return torch.arange(start, self.size, device=tokens.device)

    def select(self, budget: int) -> DraftTree:
        """The root plus the ``budget`` best candidates by cumulative score, as a connected tree."""
        tokens, scores, parents = (torch.cat(x) for x in (self._tokens, self._scores, self._parents))
        budget = min(budget, len(tokens))
        order = torch.sort(scores, descending=True, stable=True).indices[:budget]
        chosen = torch.sort(order).values  # pool order = topological order
        self.chosen = chosen  # pool index of tree node i+1 (drafters keep per-candidate data beside the pool)
        position = torch.full((len(tokens) + 1,), -1, dtype=torch.long, device=tokens.device)
        position[chosen] = torch.arange(1, budget + 1, device=tokens.device)  # pool index -> tree node
        chosen_parents = parents[chosen]
        tree_parents = torch.where(chosen_parents < 0, torch.zeros_like(chosen_parents), position[chosen_parents])
        if bool((tree_parents < 0).any()):
            raise RuntimeError("draft tree selection is disconnected (a child outscored its parent)")
        root = torch.tensor([self.root_token], dtype=tokens.dtype, device=tokens.device)
        return DraftTree(tokens=torch.cat((root, tokens[chosen])),
                         parents=torch.cat((torch.tensor([-1], device=tokens.device), tree_parents)),
                         scores=torch.cat((torch.tensor([float("inf")], device=tokens.device), scores[chosen])))
