"""Acceptance of a draft tree against the target's logits: exactly lossless.

Greedy: walk down from the root, following the child whose token equals the target's argmax.
Sampling: recursive rejection over siblings for deterministic draft candidates. At a node with
target distribution p, try its children in order: accept child x with probability p(x); on
rejection set p(x) = 0 and renormalise. When a node has no child left (or none at all), the next
token is drawn from the current p. The emitted token at every step is therefore distributed
exactly as p, the target's processed distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .sampling import TokenSampler
from .tree import DraftTree


class NodeLogitsLike(Protocol):
    """Target logits per tree node: a [N, V] tensor, or the lazy `target.NodeLogits`."""

    def __getitem__(self, node: int) -> torch.Tensor: ...


@dataclass
class Verdict:
    """Accepted node indices (root first, so ``len(path) - 1`` draft tokens were accepted) and the bonus token."""

    path: list[int]
    bonus_token: int

    @property
    def accepted_drafts(self) -> int:
        return len(self.path) - 1


def verify_greedy(tree: DraftTree, logits: NodeLogitsLike) -> Verdict:
    """Longest path whose tokens each equal the target's argmax at their parent."""
    tokens = tree.tokens.tolist()
    node, path = 0, [0]
    while True:
        best = int(logits[node].argmax())
        nxt = next((c for c in tree.children(node) if tokens[c] == best), None)
        if nxt is None:
            return Verdict(path=path, bonus_token=best)
        node = nxt
        path.append(node)


def verify_sampling(tree: DraftTree, logits: NodeLogitsLike, sampler: TokenSampler) -> Verdict:
    """Recursive rejection sampling over the tree (deterministic candidates, q(x) = 1)."""
    tokens = tree.tokens.tolist()
    node, path = 0, [0]
    while True:
        probs = sampler.probs(logits[node])
        tried: set[int] = set()
        accepted = None
        for child in tree.children(node):
            token = tokens[child]
            if token in tried:
                continue
            tried.add(token)
            if float(torch.rand(())) < float(probs[token]):
                accepted = child
                break
            probs[token] = 0.0
            total = probs.sum()
            if total <= 0:  # rounding left p(x) just under 1 with nothing else: x had all the mass
                accepted = child
                break
            probs = probs / total
        if accepted is None:
            return Verdict(path=path, bonus_token=int(torch.multinomial(probs, 1)))
        node = accepted
        path.append(node)


def verify(tree: DraftTree, logits: NodeLogitsLike, sampler: TokenSampler) -> Verdict:
    return verify_greedy(tree, logits) if sampler.greedy else verify_sampling(tree, logits, sampler)
