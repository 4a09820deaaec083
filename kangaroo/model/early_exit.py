"""Kangaroo's second early exit: when to stop drafting within a round.

The first token of a round is always drafted. After that another token is drafted only while the
last drafted token's top probability (the adapter's confidence) is at least ``threshold`` and fewer
than ``steps`` tokens were drafted. The low-confidence token itself stays in the draft: the target
verifies it like the others, and its shallow hidden state is needed for that anyway.
"""

from __future__ import annotations

from collections.abc import Iterable


def draft_more(drafted: int, confidence: float | None, threshold: float, steps: int) -> bool:
    """Whether to draft another token after ``drafted`` tokens, the last with top probability ``confidence``."""
    if drafted == 0:
        return True
    return drafted < steps and confidence is not None and confidence >= threshold


def chain_length(confidences: Iterable[float], threshold: float, steps: int) -> int:
    """Tokens a chain drafts when its successive tokens have top probabilities ``confidences``."""
    drafted, confidence = 0, None
    for confidence_next in confidences:
        if not draft_more(drafted, confidence, threshold, steps):
            break
        drafted, confidence = drafted + 1, confidence_next
    return drafted
