"""Held-out metrics of a Kangaroo adapter, computed from data alone (no generation).

Per assistant position t (weight = loss mask of x_{t+1}), with p the base model's full next-token
distribution ``softmax(lm_head(f_t))`` and q the adapter's (zero outside a reduced draft vocabulary):

* ``loss`` = the training loss (soft cross-entropy over the draft vocabulary, `losses.adapter_loss`);
* ``expected_acceptance`` = mean of sum_v min(p_v, q_v): the probability that a token sampled from
  the adapter is accepted by speculative sampling at temperature 1;
* ``top1`` = how often argmax q = argmax p (a greedy draft token is accepted);
* ``simulated_tau`` / ``simulated_drafted``: a sequential replay of greedy Kangaroo rounds over each
  held-out answer with the given ``threshold`` and ``steps`` (drafting stops by `draft_more` on the
  adapter's top probabilities; a round accepts the drafts up to the first top-1 mismatch, plus one
  token). It equals what greedy decoding would see where the answer is the base model's own greedy
  continuation (data made with ``--regenerate``), and approximates it elsewhere (the drafts after a
  mismatch are counted with the confidences the adapter has on the true tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.early_exit import draft_more
from .losses import layer_key


def replay_rounds(matches: list[bool], confidences: list[float], threshold: float, steps: int) -> tuple[int, int, int]:
    """Greedy Kangaroo rounds over one answer: (rounds, tokens produced, tokens drafted).

    ``matches[t]`` says the adapter's top-1 at t equals the base model's; ``confidences[t]`` is its top
    probability. A round starting at t drafts the tokens predicted at t, t+1, ... (stopping by the early
    exit rule) and accepts them up to the first mismatch, plus the target's own token."""
    rounds = produced = drafted_total = 0
    t, end = 0, len(matches)
    while t < end:
        drafted, confidence = 0, None
        while t + drafted < end and draft_more(drafted, confidence, threshold, steps):
            confidence = confidences[t + drafted]
            drafted += 1
        accepted = 0
        while accepted < drafted and matches[t + accepted]:
            accepted += 1
        tokens = min(accepted + 1, end - t)  # the answer ends there: like max_new_tokens, cut the last round
        rounds, produced, drafted_total = rounds + 1, produced + tokens, drafted_total + drafted
        t += accepted + 1
    return rounds, produced, drafted_total


@dataclass
class HoldoutScores:
    """Per-position results of an adapter on held-out answers: sums, and per answer span the top-1 matches
    and top probabilities that greedy rounds are replayed from (for any threshold and steps)."""

    positions: float = 0.0
    cross_entropy: float = 0.0
    acceptance: float = 0.0
    top1: float = 0.0
    spans: list[tuple[list[bool], list[float]]] = field(default_factory=list)

    def replay(self, threshold: float, steps: int) -> dict:
        """Replayed greedy rounds: tokens per round (τ) and drafted tokens per round."""
        rounds = produced = drafted = 0
        for matches, confidences in self.spans:
            r, n, d = replay_rounds(matches, confidences, threshold, steps)
            rounds, produced, drafted = rounds + r, produced + n, drafted + d
        return {"simulated_tau": produced / rounds if rounds else None,
                "simulated_drafted": drafted / rounds if rounds else None}


@torch.no_grad()
def score_adapter(model, samples: list[dict[str, torch.Tensor]], exit_layer: int,
                  device: torch.device) -> HoldoutScores:
    """Run ``model`` over held-out samples once (see the module docstring for what is measured)."""
    was_training = model.training
    model.eval()
    key = layer_key(exit_layer)
    full_head, head = model.full_head_weight.float(), model.head_weight.float()
    scores = HoldoutScores()
    for sample in samples:
        weight = sample["loss_mask"][1:].to(device)
        shallow, features = sample[key][None].to(device), sample["hidden_state"][:-1].to(device)
        selected = weight > 0
        if not bool(selected.any()):
            continue
        predicted = model(shallow)[0, :-1][selected].float()
        p = torch.softmax(features[selected].float() @ full_head.T, dim=-1)
        log_q = torch.log_softmax(predicted @ head.T, dim=-1)
        q_draft = log_q.exp()
        teacher = torch.softmax(features[selected].float() @ head.T, dim=-1)
        scores.cross_entropy -= float((teacher * log_q).sum())
        q = q_draft if model.d2t is None else torch.zeros_like(p).index_copy_(1, model.d2t.to(device), q_draft)
        scores.acceptance += float(torch.minimum(p, q).sum(-1).sum())
        confidence, best = q_draft.max(-1)
        matches = model.to_target_ids(best) == p.argmax(-1)
        scores.top1 += float(matches.float().sum())
        scores.positions += float(selected.sum())
        # one span per contiguous assistant part: a round never crosses into a user turn
        scores.spans += [(matches[span].tolist(), confidence[span].tolist()) for span in _spans(selected)]
    if was_training:
        model.train()
    return scores


def evaluate_adapter(model, samples: list[dict[str, torch.Tensor]], exit_layer: int, threshold: float, steps: int,
                     device: torch.device) -> dict:
    """The per-epoch held-out numbers of training (see the module docstring)."""
    scores = score_adapter(model, samples, exit_layer, device)
    n = scores.positions
    return {
        "loss": scores.cross_entropy / n if n else None,
        "expected_acceptance": scores.acceptance / n if n else None,
        "top1": scores.top1 / n if n else None,
        **scores.replay(threshold, steps),
        "positions": int(n),
    }


def _spans(selected: torch.Tensor) -> list[slice]:
    """Slices (into the selected rows) of each run of consecutive selected positions."""
    index = selected.nonzero().flatten().tolist()
    spans, begin = [], 0
    for i in range(1, len(index) + 1):
        if i == len(index) or index[i] != index[i - 1] + 1:
            spans.append(slice(begin, i))
            begin = i
    return spans
