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
from safetensors.torch import load_file, save_file
from torch import nn

from jakiro.errors import CheckpointError, ConfigError
from jakiro.model.cnets import DraftAttention, RMSNorm, check_head_matches_base
from jakiro.model.kv_cache import PreallocatedLayer

from .config import KangarooConfig


class KangarooAdapter(nn.Module):
    """One attention block with pre-attention and final RMSNorm; reads the shallow stream, predicts features."""

    methods: tuple[str, ...] = ("kangaroo",)

    def __init__(self, config: KangarooConfig):
        super().__init__()
        if not isinstance(config, KangarooConfig):
            raise ConfigError("a Kangaroo adapter needs a KangarooConfig (it has an exit layer): build one with "
                              "kangaroo.model.adapter.new_adapter(base_model, exit_layer=...)")
        self.config = config
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DraftAttention(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.draft_vocab_size is not None:
            self.register_buffer("d2t", torch.arange(config.draft_vocab_size), persistent=True)
        else:
            self.d2t = None
        for name in ("full_head_weight", "head_weight"):
            self.register_buffer(name, None, persistent=False)

    # -- the base model's output head (frozen, shared, never saved) --------------------------------
    def bind_base(self, base_model: nn.Module) -> "KangarooAdapter":
        """Share the base model's output head; refuse a base of another shape or too few layers."""
        check_head_matches_base(self.config, base_model.config)
        layers = int(base_model.config.num_hidden_layers)
        if self.config.exit_layer >= layers:
            raise ConfigError(f"this adapter exits after layer {self.config.exit_layer} but the base model has only "
                              f"{layers} layers: use an adapter trained for this base")
        self.full_head_weight = base_model.get_output_embeddings().weight.detach()
        self.refresh_head()
        return self

    def refresh_head(self) -> None:
        """(Re)build the draft output head, e.g. after `d2t` was loaded or set from data frequencies."""
        head = self.full_head_weight
        self.head_weight = head if self.d2t is None else head.index_select(0, self.d2t.to(head.device)).contiguous()

    @property
    def draft_vocab_size(self) -> int:
        return self.config.draft_vocab_size or self.config.vocab_size

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of predicted features (map indices with `to_target_ids`)."""
        return features @ self.head_weight.T

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return draft_ids if self.d2t is None else self.d2t[draft_ids]

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

    # -- checkpoints -----------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (the adapter's own weights only)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in self.state_dict().items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt", "method": self.config.method})
        tmp.replace(folder / "model.safetensors")
        self.config.save(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, base_model: nn.Module | None = None) -> "KangarooAdapter":
        """Load strictly; a Jakiro head, an adapter for another base or a broken export fails in one line."""
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"Kangaroo adapter folder {str(folder)!r} not found: pass the folder written by "
                                  "kangaroo.train.main")
        config = KangarooConfig.load(folder)
        if base_model is not None:
            check_head_matches_base(config, base_model.config, folder)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{folder} has no model.safetensors: the adapter export is incomplete")
        model = cls(config)
        try:
            state = load_file(str(weights))
        except Exception as err:  # safetensors raises several types for a corrupt file
            raise CheckpointError(f"{weights} is unreadable ({err}): re-export the adapter") from None
        expected = model.state_dict()
        missing, unexpected = set(expected) - set(state), set(state) - set(expected)
        if missing or unexpected:
            raise CheckpointError(f"{weights} does not fit a Kangaroo adapter: missing {sorted(missing)[:4]}, "
                                  f"unexpected {sorted(unexpected)[:4]}")
        wrong = [f"{k} {tuple(v.shape)} (config wants {tuple(expected[k].shape)})"
                 for k, v in sorted(state.items()) if v.shape != expected[k].shape]
        if wrong:
            raise CheckpointError(f"{weights} does not match its config.json: {'; '.join(wrong[:3])}: "
                                  "re-export the adapter")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        if base_model is not None:
            model.bind_base(base_model)
        return model


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
