"""The draft layer's feed-forward block: a dense mixture of SwiGLU experts with two read-outs.

* ``mix``: the gate's first ``num_experts`` logits weight every expert (softmax), as in Jakiro's
  "MoE mechanism"; with one expert this is a plain SwiGLU MLP (the EAGLE-2 head).
* ``contrastive``: the gate's last two logits weight experts 0 and 1; the dominant expert's weighted
  output minus the other's. Jakiro trains it to look two tokens ahead and drafts the tree's last level from it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Branches = Literal["mix", "contrastive", "both"]


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ExpertMixture(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int, contrastive: bool):
        super().__init__()
        self.num_experts = num_experts
        self.contrastive = contrastive
        self.experts = nn.ModuleList(SwiGLU(hidden_size, intermediate_size) for _ in range(num_experts))
        gate_logits = (num_experts if num_experts > 1 else 0) + (2 if contrastive else 0)
        self.gate = nn.Linear(hidden_size, gate_logits, bias=False) if gate_logits else None

    def forward(self, x: torch.Tensor, branches: Branches = "mix") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the ``mix`` branch, the ``contrastive`` branch, or both as a tuple."""
        if branches != "mix" and not self.contrastive:
            raise ValueError("this head has no contrastive branch")
        outputs = torch.stack([expert(x) for expert in self.experts])  # [E, ..., H]
        mix = contrastive = None
        if branches in ("mix", "both"):
            if self.num_experts == 1:
                mix = outputs[0]
            else:
                weights = F.softmax(self.gate(x)[..., : self.num_experts], dim=-1, dtype=torch.float32).to(x.dtype)
                mix = torch.einsum("e...h,...e->...h", outputs, weights)
        if branches in ("contrastive", "both"):
            pair = F.softmax(self.gate(x)[..., -2:], dim=-1, dtype=torch.float32).to(x.dtype)  # [..., 2]
            first_dominant = (pair[..., :1] >= pair[..., 1:])
            weighted0, weighted1 = pair[..., :1] * outputs[0], pair[..., 1:] * outputs[1]
            contrastive = torch.where(first_dominant, weighted0 - weighted1, weighted1 - weighted0)
        if branches == "both":
            return mix, contrastive
        return mix if branches == "mix" else contrastive
