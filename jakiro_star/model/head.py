"""The Jakiro* draft head: Jakiro's single decoder layer with decoupled GPT-NeoX experts.

Everything up to the feed-forward block (``fc(concat(embed(x), f))``, attention without input norm,
post-attention RMSNorm) is the core's `JakiroDraftModel`. The block holds ``num_experts`` (2)
GPT-NeoX-style MLPs (hidden -> ``expert_intermediate_size`` -> hidden, GELU, with biases) and a gate
with one logit per expert. Read-outs:

* ``mix``: ``residual + sum_e softmax(gate)_e * expert_e`` — the original's training output;
* ``experts``: ``residual + expert_e`` for every expert [E, B, S, H] — each expert's own next feature,
  which Jakiro* drafts from (the original dropped the gate weights at inference; training here
  supervises every expert alone as well, so this read-out is what was trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from jakiro.model.cnets import JakiroDraftModel
from jakiro.model.configs import DraftConfig
from jakiro.model.kv_cache import PreallocatedLayer

StarBranches = Literal["mix", "experts", "both", "dominant"]


class NeoXExpert(nn.Module):
    """GPT-NeoX's MLP: ``dense_4h_to_h(gelu(dense_h_to_4h(x)))`` (names as in `transformers`' GPTNeoXMLP)."""

    def __init__(self, hidden_size: int, width: int):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(hidden_size, width)
        self.dense_4h_to_h = nn.Linear(width, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))


class DecoupledExperts(nn.Module):
    """``num_experts`` NeoX experts and an ``num_experts``-logit gate; returns every expert's output and the gate."""

    def __init__(self, hidden_size: int, width: int, num_experts: int):
        super().__init__()
        self.num_experts = num_experts
        self.experts = nn.ModuleList(NeoXExpert(hidden_size, width) for _ in range(num_experts))
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert outputs [E, ..., H] and gate logits [..., E]."""
        return torch.stack([expert(x) for expert in self.experts]), self.gate(x)

    @staticmethod
    def mixture(outputs: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(gate_logits, dim=-1, dtype=torch.float32).to(outputs.dtype)
        return torch.einsum("e...h,...e->...h", outputs, weights)


@dataclass
class ExpertStep:
    """One draft forward read out per expert: next features [E, B, S, H] and gate logits [B, S, E]."""

    features: torch.Tensor
    gate_logits: torch.Tensor


class JakiroStarHead(JakiroDraftModel):
    """Draft head whose experts draft independently; loads and saves like every core head."""

    methods = ("jakiro_star",)
    chain_read_out = "dominant"  # held-out chains follow the first child drafted at every node (`jakiro.train.rollout`)

    def build_ffn(self, config: DraftConfig) -> nn.Module:
        return DecoupledExperts(config.hidden_size, config.expert_intermediate_size, config.num_experts)

    def _experts(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layers[0]
        return layer.mlp_moe(layer.post_attention_layernorm(hidden))

    def expert_step(self, features: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, cache: PreallocatedLayer | None = None,
                    last_only: bool = False) -> ExpertStep:
        """Every expert's own next feature (residual + expert output) and the gate logits."""
        hidden = self.attend(features, input_ids, positions, mask, cache, last_only)
        outputs, gate_logits = self._experts(hidden)
        return ExpertStep(hidden + outputs, gate_logits)

    def forward(self, features: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: PreallocatedLayer | None = None,
                branches: StarBranches = "mix", last_only: bool = False):
        """``mix`` [B,S,H] (default, as the core's heads), ``experts`` [E,B,S,H], ``both`` (mix, experts), or
        ``dominant`` [B,S,H]: per position the expert with the largest gate logit, whose best token the drafter
        proposes first and whose feature that child continues from."""
        if branches not in ("mix", "experts", "both", "dominant"):
            raise ValueError(f"a Jakiro* head reads out 'mix', 'experts', 'both' or 'dominant', not {branches!r}")
        hidden = self.attend(features, input_ids, positions, mask, cache, last_only)
        outputs, gate_logits = self._experts(hidden)
        if branches == "dominant":
            index = gate_logits.argmax(-1)[None, ..., None].expand(1, *outputs.shape[1:])
            return hidden + outputs.gather(0, index)[0]
        mix = hidden + DecoupledExperts.mixture(outputs, gate_logits) if branches != "experts" else None
        if branches == "mix":
            return mix
        experts = hidden + outputs
        return experts if branches == "experts" else (mix, experts)
