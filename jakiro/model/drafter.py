"""The drafter interface: the one seam between the shared generation loop and a method.

A drafter proposes a tree of candidate tokens rooted at the last token the target produced, and
is then told what the target accepted (token ids and the target's features at those positions).
Jakiro, EAGLE-2, Jakiro* and Kangaroo differ only in their drafter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .tree import DraftTree


class Drafter(ABC):
    @abstractmethod
    def start(self, input_ids: torch.Tensor, features: torch.Tensor, capacity: int) -> None:
        """Begin a sequence: the prompt ids [1, P] and the target's features for them [1, P, H]."""

    @abstractmethod
    def propose(self, root_token: int) -> DraftTree:
        """Draft a tree below ``root_token`` (the token the target just produced, not yet verified)."""

    @abstractmethod
    def accept(self, accepted_ids: torch.Tensor, accepted_features: torch.Tensor) -> None:
        """Record the verified tokens [1, a+1] (root first) and the target's features there [1, a+1, H]."""

    @property
    def forwards_per_round(self) -> int:
        """Draft forwards one `propose` costs (for reports); subclasses override."""
        return 0

    @property
    def max_path_drafts(self) -> int | None:
        """The most draft tokens one round can accept (the deepest tree level), or None if unbounded/unknown."""
        return None
