"""Training-time rollout for Jakiro*: one chain per expert.

At inference a Jakiro* child continues from the feature of the expert that proposed it, and at that child
both experts propose again (`jakiro_star.model.drafter`). So step 1 reads the base model's real features,
as in the core's rollout (`jakiro.train.unroll`), and from step 2 on the rollout follows one chain per
expert: chain e feeds back expert e's own predicted feature at every step, and every step reads out the
gated mixture and all experts (each expert proposes children on every chain). The masks and positions are
the core's: step j at position p is the path that started at s = p - j + 1. Each chain has its own keys
after step 1 (`StepKV.fork`). Paths that switch experts midway are not rolled out (that would branch
E^(K-1) ways); the chains give every expert's read-out inputs that its own predictions made.

Cost: 1 + E * (K - 1) forwards of the sequence (the core's rollout: K).
"""

from __future__ import annotations

import torch

from jakiro.train.unroll import StepKV, rollout_mask, shifted


def expert_unroll(model, features: torch.Tensor, input_ids: torch.Tensor, steps: int
                  ) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``outputs[j - 1]``: step j's ``(mix [B,S,H], experts [E,B,S,H])``, one pair per chain.

    Step 1 has one pair (real features); step j >= 2 has E, chain e having fed back expert e's features.
    ``features`` [B,S,H] and ``input_ids`` [B,S] are paired ``(f_p, x_{p+1})``; ``model`` may be wrapped (it
    is only called). With ``steps == 1`` this is exactly the plain causal forward."""
    if steps == 1:
        return [[model(features, input_ids, branches="both")]]
    length = input_ids.shape[1]
    positions = torch.arange(length, device=input_ids.device)[None]
    first = StepKV()
    mix, experts = model(features, input_ids, positions, rollout_mask(length, 1, input_ids.device), first,
                         branches="both")
    outputs = [[(mix, experts)]]
    chains = [(first.fork(), shifted(experts[e])) for e in range(experts.shape[0])]
    for step in range(2, steps + 1):
        row = []
        for expert, (cache, hidden) in enumerate(chains):
            mix, experts = model(hidden, input_ids, positions, rollout_mask(length, step, input_ids.device), cache,
                                 branches="both")
            row.append((mix, experts))
            chains[expert] = (cache, shifted(experts[expert]))
        outputs.append(row)
    return outputs
