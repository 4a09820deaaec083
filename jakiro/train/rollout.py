"""Held-out metrics: loss, top-1, chain accuracy per draft step, and a simulated acceptance length.

Chain accuracy follows greedy chain drafting: from a start position s the draft runs ``rollout_steps``
steps on its own predicted features (the real following tokens as inputs: on self-distilled data, the
base model's own answer) and step j counts only if steps 1..j all matched the base model's greedy token
(the argmax of its full output head). So ``acc_per_step[1]`` is "steps 1 and 2 both correct". The chain
reads the head's ``chain_read_out`` (the gated mixture; for Jakiro* its dominant expert, the first child it
drafts at every node, continued from that expert's feature), as do top-1 and the loss.
``1 + sum(acc_per_step)`` estimates tokens per verification round for a single-chain tree.

All starts are rolled out at once with the training-time rollout (`jakiro.train.unroll`), whose masks
are those of inference; a test checks it against a per-start loop over the inference KV cache. The loss
is the training objective (with ``rollout_steps_train`` steps) on clean features.
"""

from __future__ import annotations

import torch

from .losses import loss_from_outputs, rollout_outputs


@torch.no_grad()
def evaluate(model, samples: list[dict[str, torch.Tensor]], config, device: torch.device) -> dict:
    model.eval()
    steps = config.rollout_steps
    read_out = getattr(model, "chain_read_out", "mix")
    matched = torch.zeros(steps)
    tried = 0
    losses, mix_correct, mix_count, con_correct, con_count = [], 0.0, 0.0, 0.0, 0.0
    clean = _NoNoise(config)
    for sample in samples:
        batch = {k: v[None].to(device) for k, v in sample.items()}
        batch["attention"] = torch.ones_like(batch["loss_mask"])
        outputs = rollout_outputs(model, batch, clean, max(steps, config.rollout_steps_train), model.config.contrastive,
                                  read_out=read_out)
        total, parts = loss_from_outputs(outputs[:config.rollout_steps_train], batch, clean, model.head_weight)
        losses.append(float(total))
        mix_correct += float(parts["mix"].correct)
        mix_count += float(parts["mix"].count)
        if "contrastive" in parts:
            con_correct += float(parts["contrastive"].correct)
            con_count += float(parts["contrastive"].count)
        starts = chain_starts(batch["loss_mask"][0], steps, config.eval_starts)
        if len(starts):
            matched += chain_matches(model, [mix for mix, _ in outputs], batch["hidden_state"][0], starts, steps)
            tried += len(starts)
    model.train()
    acc_per_step = (matched / max(tried, 1)).tolist()
    return {
        "loss": sum(losses) / max(len(losses), 1),
        "top1": mix_correct / max(mix_count, 1.0),
        "contrastive_top1": con_correct / con_count if con_count else None,
        "acc_per_step": acc_per_step,
        "simulated_accept_length": 1.0 + sum(acc_per_step),
        "rollouts": tried,
        "chain_read_out": read_out,
    }


def chain_starts(loss_mask: torch.Tensor, steps: int, per_sequence: int) -> torch.Tensor:
    """Start positions s inside an answer (loss mask at s+1) with room for ``steps`` steps; evenly spread picks
    of at most ``per_sequence`` of them (every one when it is 0)."""
    length = len(loss_mask)
    candidates = [t for t in range(length - steps - 2) if loss_mask[t + 1] > 0]
    if not candidates:
        return torch.zeros(0, dtype=torch.long)
    if per_sequence <= 0:
        return torch.tensor(candidates)
    picks = torch.linspace(0, len(candidates) - 1, min(per_sequence, len(candidates))).long()
    return torch.tensor(candidates)[picks]


def chain_matches(model, mix_outputs: list[torch.Tensor], features: torch.Tensor, starts: torch.Tensor,
                  steps: int) -> torch.Tensor:
    """[steps] counts of starts whose steps 1..j all drafted the base model's greedy token.

    Step j of the path that starts at s sits at position p = s + j - 1 and drafts x_{p+2}, the base
    model's greedy choice at ``features[p + 1]``."""
    starts = starts.to(features.device)
    alive = torch.ones(len(starts), dtype=torch.bool, device=features.device)
    counts = torch.zeros(steps)
    for step in range(1, steps + 1):
        positions = starts + step - 1
        guess = model.to_target_ids(model.logits(mix_outputs[step - 1][0, positions]).argmax(-1))
        truth = (features[positions + 1] @ model.full_head_weight.T).argmax(-1)
        alive &= guess == truth
        counts[step - 1] = float(alive.sum())
    return counts


class _NoNoise:
    """The training config with noise switched off (evaluation sees clean features)."""

    def __init__(self, config):
        self._config = config

    def __getattr__(self, name):
        return 0.0 if name == "noise" else getattr(self._config, name)
