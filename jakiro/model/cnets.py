"""The Jakiro draft head: one decoder layer over ``fc(concat(embed(token), feature))``.

At draft position t the inputs are the base model's feature ``f_t`` (last hidden state after its
final norm) and the next token ``x_{t+1}``; the output is a prediction of ``f_{t+1}``, so the
frozen base ``lm_head`` applied to it predicts ``x_{t+2}``. The base embedding and ``lm_head`` are
shared, frozen, and never saved with the head. The same module serves training and inference;
which FFN branches come out is an argument (`branches`), never an edit of source.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .configs import DraftConfig
from .draft_head import DraftHead
from .kv_cache import PreallocatedLayer
from .moe import Branches, ExpertMixture


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class DraftAttention(nn.Module):
    """LLaMA-style multi-head attention with RoPE and grouped KV heads, cached in a preallocated layer."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[..., None] * self.inv_freq  # [B, S, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, S, D]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                cache: PreallocatedLayer | None) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(positions, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        if mask is None and cache is not None and length > 1:
            # causal after the cached prefix (SDPA's is_causal would align the triangle to the first key)
            total = k.shape[-2]
            mask = torch.ones(length, total, dtype=torch.bool, device=x.device).tril(total - length)[None, None]
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=length > 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class DraftLayer(nn.Module):
    """Attention (no input norm: the `fc` output goes straight in), then the expert mixture (or ``ffn``)."""

    def __init__(self, config: DraftConfig, ffn: nn.Module | None = None):
        super().__init__()
        self.self_attn = DraftAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp_moe = ffn if ffn is not None else ExpertMixture(
            config.hidden_size, config.expert_intermediate_size, config.num_experts, config.contrastive)


class JakiroDraftModel(DraftHead):
    """The draft head (Jakiro with 2 experts + contrastive branch; EAGLE-2 with 1 expert, no branch).

    Other methods' heads subclass it and replace the layer's feed-forward block (`build_ffn`). Output head,
    draft vocabulary and checkpoints: `DraftHead`."""

    methods: tuple[str, ...] = ("jakiro", "eagle2")  # the config.json methods this class loads

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.config = config
        self.fc = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=config.fc_bias)
        self.layers = nn.ModuleList([DraftLayer(config, self.build_ffn(config))])
        self.register_vocabulary(config, shared=("embed_weight", "full_head_weight", "head_weight"))

    # -- base-model weights (frozen, shared, never saved) ------------------------------------------
    def bind_base(self, base_model: nn.Module) -> "JakiroDraftModel":
        """Share the base model's input embedding and output head (a subset of rows with a draft vocab)."""
        self.bind_output_head(base_model)
        self.embed_weight = base_model.get_input_embeddings().weight.detach()
        return self

    def build_ffn(self, config: DraftConfig) -> nn.Module | None:
        """The decoder layer's feed-forward block; None = Jakiro's `ExpertMixture`."""
        return None

    # -- forward ---------------------------------------------------------------------------------
    def attend(self, features: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, cache: PreallocatedLayer | None = None,
               last_only: bool = False) -> torch.Tensor:
        """The residual stream after attention (before the feed-forward block); arguments as `forward`."""
        if positions is None:
            past = cache.length if cache is not None else 0
            positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None]
        embeds = F.embedding(input_ids, self.embed_weight).to(features.dtype)
        hidden = self.fc(torch.cat((embeds, features), dim=-1))
        hidden = hidden + self.layers[0].self_attn(hidden, positions, mask, cache)
        return hidden[:, -1:] if last_only else hidden

    def forward(self, features: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: PreallocatedLayer | None = None,
                branches: Branches = "mix", last_only: bool = False):
        """Predict next features for every position (or only the last, when ``last_only``).

        ``features`` [B,S,H] and ``input_ids`` [B,S] are paired (f_t, x_{t+1}); ``mask`` is a boolean or
        additive attention mask [B,1,S,past+S] (causal when omitted); returns the requested branch(es).
        """
        hidden = self.attend(features, input_ids, positions, mask, cache, last_only)
        layer = self.layers[0]
        branch = layer.mlp_moe(layer.post_attention_layernorm(hidden), branches)
        if branches == "both":
            return hidden + branch[0], hidden + branch[1]
        return hidden + branch

    # -- checkpoints (saving and the strict loading: `DraftHead`) ---------------------------------
    @classmethod
    def load_config(cls, folder: Path) -> DraftConfig:
        config = DraftConfig.load(folder)
        if config.method not in cls.methods:
            raise CheckpointError(
                f"{str(folder)!r} holds a {config.method} head, but {cls.__name__} loads {'/'.join(cls.methods)} heads: "
                f"load it with EaModel.from_pretrained or jakiro.methods.load_head (they pick the class by method)")
        return config

    @classmethod
    def describe(cls, config: DraftConfig) -> str:
        return f"a {config.method} head with {config.num_experts} expert(s)"


def init_weights(model: JakiroDraftModel, std: float = 0.02) -> None:
    """Small normal init; `fc` starts near identity on the feature half so an untrained head echoes features."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    hidden = model.config.hidden_size
    with torch.no_grad():
        model.fc.weight[:, hidden:] += torch.eye(hidden)
