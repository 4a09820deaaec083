"""The Kangaroo adapter: maps the base model's shallow residual stream to a prediction of its final feature.

    h = s + Attn(RMSNorm(s))        # one LLaMA attention block with RoPE (the library's draft attention)
    f = RMSNorm(h)                  # the final norm; no MLP
    logits = lm_head(f)             # the base model's frozen output head (a row subset with a draft vocab)

``s`` at position t is the residual stream after the first ``exit_layer`` decoder layers (HF
``hidden_states[exit_layer]``), ``f`` is trained to match the base model's final feature at the same
position, so ``lm_head(f)`` predicts token t+1. The output head is shared with the base model and never
saved with the adapter; with ``draft_vocab_size`` the adapter scores only the most frequent tokens
(``d2t`` maps them to target ids), which is cheaper and keeps verification exact.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from jakiro.errors import ConfigError
from jakiro.model.cnets import DraftAttention, RMSNorm
from jakiro.model.draft_head import DraftHead
from jakiro.model.kv_cache import PreallocatedLayer

from .config import KangarooConfig


class KangarooAdapter(DraftHead):
    """One attention block with pre-attention and final RMSNorm; reads the shallow stream, predicts features.

    Output head, draft vocabulary, saving and the strict loading are every head's (`DraftHead`)."""

    methods: tuple[str, ...] = ("kangaroo",)
    kind, noun, written_by = "Kangaroo adapter", "adapter", "kangaroo.train.main"

    def __init__(self, config: KangarooConfig):
        super().__init__()
        if not isinstance(config, KangarooConfig):
            raise ConfigError("a Kangaroo adapter needs a KangarooConfig (it has an exit layer): build one with "
                              "kangaroo.model.adapter.new_adapter(base_model, exit_layer=...)")
        self.config = config
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DraftAttention(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.register_vocabulary(config, shared=("full_head_weight", "head_weight"))

    # -- the base model's output head (frozen, shared, never saved) --------------------------------
    def bind_base(self, base_model: nn.Module) -> "KangarooAdapter":
        """Share the base model's output head; refuse a base of another shape or too few layers."""
        layers = int(base_model.config.num_hidden_layers)
        if self.config.exit_layer >= layers:
            raise ConfigError(f"this adapter exits after layer {self.config.exit_layer} but the base model has only "
                              f"{layers} layers: use an adapter trained for this base")
        self.bind_output_head(base_model)
        return self

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, shallow: torch.Tensor, positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache: PreallocatedLayer | None = None, last_only: bool = False) -> torch.Tensor:
        """Predicted final features [B, S, H] (or [B, 1, H] with ``last_only``) for a shallow stream [B, S, H].

        Positions default to right after ``cache``; the attention is causal after the cache unless a
        ``mask`` (boolean or additive, [B, 1, S, past+S]) is given."""
        if positions is None:
            past = cache.length if cache is not None else 0
            positions = torch.arange(past, past + shallow.shape[1], device=shallow.device)[None]
        hidden = shallow + self.self_attn(self.input_layernorm(shallow), positions, mask, cache)
        if last_only:
            hidden = hidden[:, -1:]
        return self.norm(hidden)

    # -- checkpoints (saving and the strict loading: `DraftHead`) ---------------------------------
    @classmethod
    def load_config(cls, folder: Path) -> KangarooConfig:
        """The adapter's config; a Jakiro head or a broken config.json is refused in one line."""
        return KangarooConfig.load(folder)

    @classmethod
    def describe(cls, config: KangarooConfig) -> str:
        return "a Kangaroo adapter"


def init_adapter(model: KangarooAdapter, std: float = 0.02) -> None:
    """Small normal init of the projections (norms start at 1): an untrained adapter is close to the plain
    early exit ``lm_head(RMSNorm(s))``; training copies the base model's final norm weight in as well."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def new_adapter(base_model: nn.Module, seed: int | None = None, **options) -> KangarooAdapter:
    """A freshly initialised adapter bound to ``base_model`` (its final norm weight copied in), in its dtype."""
    config = KangarooConfig.from_base_config(base_model.config, **options)
    if seed is not None:
        torch.manual_seed(seed)
    adapter = KangarooAdapter(config)
    init_adapter(adapter)
    base_norm = getattr(base_model.get_decoder(), "norm", None)
    if base_norm is not None and getattr(base_norm, "weight", None) is not None:
        with torch.no_grad():
            adapter.norm.weight.copy_(base_norm.weight.detach().float())
    adapter.bind_base(base_model)
    adapter.to(device=base_model.get_output_embeddings().weight.device, dtype=base_model.dtype)
    return adapter
