"""Held-out metrics: loss, top-1 agreement per draft step, and a simulated acceptance length.

The simulated acceptance length follows greedy chain drafting: from a start position the draft
runs ``rollout_steps`` steps on its own predicted features (the real following tokens as inputs),
and step j counts only if steps < j all matched the base model's argmax. ``1 + mean accepted``
estimates tokens per verification round for a single-chain tree.
"""

from __future__ import annotations

import torch

from ..model.kv_cache import PreallocatedLayer
from .losses import draft_loss


@torch.no_grad()
def evaluate(model, samples: list[dict[str, torch.Tensor]], config, device: torch.device) -> dict:
    model.eval()
    steps = config.rollout_steps
    matched = torch.zeros(steps)
    tried = 0
    losses, mix_correct, mix_count, con_correct, con_count = [], 0.0, 0.0, 0.0, 0.0
    head = model.head_weight
    for sample in samples:
        batch = {k: v[None].to(device) for k, v in sample.items()}
        batch["attention"] = torch.ones_like(batch["loss_mask"])
        total, parts = draft_loss(model, batch, _NoNoise(config))
        losses.append(float(total))
        mix_correct += float(parts["mix"].correct)
        mix_count += float(parts["mix"].count)
        if "contrastive" in parts:
            con_correct += float(parts["contrastive"].correct)
            con_count += float(parts["contrastive"].count)
        ids, features, mask = batch["input_ids"][0], batch["hidden_state"][0], batch["loss_mask"][0]
        length = len(ids)
        teacher = (features @ model.full_head_weight.T).argmax(-1)  # base model's greedy choice of x_{t+1}
        candidates = [t for t in range(length - steps - 2) if mask[t + 1] > 0]
        if not candidates:
            continue
        picks = torch.linspace(0, len(candidates) - 1, min(config.eval_starts, len(candidates))).long().tolist()
        cache = PreallocatedLayer(length + steps + 1)
        model(features[None, :-1], ids[None, 1:], cache=cache)  # real-feature KV for every position
        for pick in picks:
            start = candidates[pick]
            hidden = None
            for step in range(steps):
                if step == 0:
                    cache.crop(start)
                    out = model(features[None, start:start + 1], ids[None, start + 1:start + 2], cache=cache)
                else:
                    position = start + step
                    out = model(hidden, ids[None, position + 1:position + 2], cache=cache)
                hidden = out[:, -1:]
                guess = model.to_target_ids((hidden[0, -1] @ head.T).argmax())
                if guess != teacher[start + step + 1]:
                    break
                matched[step] += 1
            tried += 1
    model.train()
    acc_per_step = (matched / max(tried, 1)).tolist()
    return {
        "loss": sum(losses) / max(len(losses), 1),
        "top1": mix_correct / max(mix_count, 1.0),
        "contrastive_top1": con_correct / con_count if con_count else None,
        "acc_per_step": acc_per_step,
        "simulated_accept_length": 1.0 + sum(acc_per_step),
        "rollouts": tried,
    }


class _NoNoise:
    """The training config with noise switched off (evaluation sees clean features)."""

    def __init__(self, config):
        self._config = config

    def __getattr__(self, name):
        return 0.0 if name == "noise" else getattr(self._config, name)
