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
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from .configs import DraftConfig
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


class JakiroDraftModel(nn.Module):
    """The draft head (Jakiro with 2 experts + contrastive branch; EAGLE-2 with 1 expert, no branch).

    Other methods' heads subclass it and replace the layer's feed-forward block (`build_ffn`)."""

    methods: tuple[str, ...] = ("jakiro", "eagle2")  # the config.json methods this class loads

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.config = config
        self.fc = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=config.fc_bias)
        self.layers = nn.ModuleList([DraftLayer(config, self.build_ffn(config))])
        if config.draft_vocab_size is not None:
            # Draft-vocab index -> target token id, learned from training-data frequencies, saved with the head.
            self.register_buffer("d2t", torch.arange(config.draft_vocab_size), persistent=True)
        else:
            self.d2t = None
        for name in ("embed_weight", "full_head_weight", "head_weight"):
            self.register_buffer(name, None, persistent=False)

    # -- base-model weights (frozen, shared, never saved) ------------------------------------------
    def bind_base(self, base_model: nn.Module) -> "JakiroDraftModel":
        """Share the base model's input embedding and output head (a subset of rows with a draft vocab)."""
        embed = base_model.get_input_embeddings().weight.detach()
        head = base_model.get_output_embeddings().weight.detach()
        check_head_matches_base(self.config, base_model.config)
        self.embed_weight = embed
        self.full_head_weight = head
        self.refresh_head()
        return self

    def refresh_head(self) -> None:
        """(Re)build the draft output head, e.g. after `d2t` was loaded or set from data frequencies."""
        head = self.full_head_weight
        self.head_weight = head if self.d2t is None else head.index_select(0, self.d2t.to(head.device)).contiguous()

    @property
    def draft_vocab_size(self) -> int:
        return self.config.draft_vocab_size or self.config.vocab_size

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of predicted features (map indices with `to_target_ids`)."""
        return hidden @ self.head_weight.T

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return draft_ids if self.d2t is None else self.d2t[draft_ids]

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

    # -- checkpoints -----------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (the head's own weights only)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in self.state_dict().items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt", "method": self.config.method})
        tmp.replace(folder / "model.safetensors")
        self.config.save(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, base_model: nn.Module | None = None) -> "JakiroDraftModel":
        """Load a head strictly; refuse one made for another base model with a one-line reason."""
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"draft head folder {str(folder)!r} not found: pass the folder written by save_pretrained")
        config = DraftConfig.load(folder)
        if config.method not in cls.methods:
            raise CheckpointError(
                f"{str(folder)!r} holds a {config.method} head, but {cls.__name__} loads {'/'.join(cls.methods)} heads: "
                f"load it with EaModel.from_pretrained or jakiro.methods.load_head (they pick the class by method)")
        if base_model is not None:
            check_head_matches_base(config, base_model.config, folder)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{folder} has no model.safetensors: the head export is incomplete")
        model = cls(config)
        try:
            state = load_file(str(weights))
        except Exception as err:  # safetensors raises several types for a corrupt file
            raise CheckpointError(f"{weights} is unreadable ({err}): re-export the head") from None
        missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
        if missing or unexpected:
            raise CheckpointError(
                f"{weights} does not fit a {config.method} head with {config.num_experts} expert(s): "
                f"missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}")
        expected = model.state_dict()
        wrong = [f"{k} {tuple(v.shape)} (config wants {tuple(expected[k].shape)})"
                 for k, v in sorted(state.items()) if v.shape != expected[k].shape]
        if wrong:
            raise CheckpointError(f"{weights} does not match its config.json: {'; '.join(wrong[:3])}: re-export the head")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        if base_model is not None:
            model.bind_base(base_model)
        return model


def check_head_matches_base(config: DraftConfig, base_config, where: str | Path = "head") -> None:
    """Raise if a head was trained for a base model of another shape."""
    from .configs import base_fingerprint

    if config.hidden_size != base_config.hidden_size or config.vocab_size != base_config.vocab_size:
        raise CheckpointError(
            f"draft head {str(where)!r} was made for hidden size {config.hidden_size} / vocab {config.vocab_size}, "
            f"but the base model has {base_config.hidden_size} / {base_config.vocab_size}: use a head trained for this base")
    if config.base_fingerprint and config.base_fingerprint != base_fingerprint(base_config):
        raise CheckpointError(
            f"draft head {str(where)!r} was trained for base {config.base_model!r}, whose architecture differs from "
            f"{getattr(base_config, 'name_or_path', '?')!r}: use a head trained for this base")


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
