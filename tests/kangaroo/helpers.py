"""Kangaroo test helpers: EaModels with a fresh or hand-set ("oracle") adapter on the tiny bases of tests.utils."""

from __future__ import annotations

import torch

from jakiro.model.ea_model import EaModel
from kangaroo.model.adapter import new_adapter


def make_kangaroo(base, exit_layer: int = 1, oracle: bool = True, seed: int = 0, adapter_options: dict | None = None,
                  sharpness: float = 1.0, **drafter_options) -> EaModel:
    """An `EaModel` drafting with the first ``exit_layer`` layers of ``base`` and a new adapter.

    With ``oracle`` the adapter's attention output is zeroed, so it predicts ``lm_head(norm(s))`` with the
    base's own final norm: on a base built with a small ``context_mix`` (layers that barely change the
    residual stream) that is almost the base's own next-token distribution, so drafts are mostly right
    and rounds accept several tokens (heavy KV compaction). ``sharpness`` > 1 scales the adapter's final norm,
    making its distribution more confident than the base's (longer chains before the early exit)."""
    adapter = new_adapter(base, seed=seed, exit_layer=exit_layer, **(adapter_options or {}))
    if oracle:
        with torch.no_grad():
            adapter.self_attn.o_proj.weight.zero_()
    with torch.no_grad():
        adapter.norm.weight.mul_(sharpness)
    adapter.eval()
    return EaModel(base, adapter, None, **drafter_options)
