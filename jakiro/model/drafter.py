"""The drafter interface: the one seam between the shared generation loop and a method.

A drafter proposes a tree of candidate tokens rooted at the last token the target produced, and
is then told what the target accepted (token ids and the target's features at those positions).
Jakiro, EAGLE-2, Jakiro* and Kangaroo differ only in their drafter.

The target's two forwards of a sequence (the prompt's prefill and each tree's verification) also go
through the drafter (`prefill`, `verify_forward`): by default the full model runs; an early-exit
drafter (Kangaroo), which already ran the shallow layers while drafting, runs only the deep ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

from .tree import DraftTree

if TYPE_CHECKING:
    from .target import NodeLogits, TargetRunner


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
    def chooses_depth(self) -> bool:
        """Its tree grows level by level up to ``depth``, so the auto budget may choose the depth too."""
        return False

    @property
    def max_path_drafts(self) -> int | None:
        """The most draft tokens one round can accept (the deepest tree level), or None if unbounded/unknown."""
        return None

    def settings(self) -> dict:
        """Method-specific drafting settings recorded with results (e.g. Kangaroo's threshold and steps)."""
        return {}

    def statistics(self) -> dict:
        """What the drafter counted since `reset_statistics` (reported by evaluation, e.g. Jakiro*'s expert mixing)."""
        return {}

    def reset_statistics(self) -> None:
        """Start counting afresh (e.g. after warm-up)."""

    @property
    def max_tree_tokens(self) -> int | None:
        """The most nodes (root included) one proposed tree can have, where it differs from the model's
        ``total_token`` (the KV cache reserves room for one tree in flight); None = ``total_token``."""
        return None

    def prefill(self, target: "TargetRunner", input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's target forward: logits of the last position [V] and features [1, P, H] (default: full model)."""
        return target.extend(input_ids)

    def verify_forward(self, target: "TargetRunner", tree: DraftTree) -> tuple["NodeLogits", torch.Tensor]:
        """The target forward over a proposed tree: per-node logits and features [N, H] (default: full model)."""
        return target.verify(tree)
