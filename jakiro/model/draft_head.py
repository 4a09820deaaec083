"""What every draft head shares, whatever it reads: the base model's frozen output head and strict save/load.

A head predicts base-model features; its logits come from the base model's own output head, shared and
never saved, restricted to a reduced draft vocabulary when ``config.draft_vocab_size`` is set (``d2t``
maps draft indices to target ids and is saved with the head). A folder holds ``config.json`` and
``model.safetensors`` with the head's own weights; loading is strict, and a folder of another method,
another base model or a broken export is refused in one line. `JakiroDraftModel` (Jakiro, EAGLE-2,
Jakiro*) and Kangaroo's adapter subclass `DraftHead`; subclasses name their config class (`load_config`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError


class DraftHead(nn.Module):
    """Output-head sharing, draft vocabulary and checkpoints; the words of its messages name the subclass."""

    kind = "draft head"               # "{kind} folder ... not found"
    noun = "head"                     # "re-export the {noun}", "the {noun} export is incomplete"
    written_by = "save_pretrained"    # what writes its folders

    def register_vocabulary(self, config, shared: tuple[str, ...]) -> None:
        """Register ``d2t`` (draft index -> target id, learned from data frequencies, saved) for a reduced draft
        vocabulary, and the unsaved slots of the base-model tensors ``shared`` (filled by `bind_base`)."""
        if config.draft_vocab_size is not None:
            self.register_buffer("d2t", torch.arange(config.draft_vocab_size), persistent=True)
        else:
            self.d2t = None
        for name in shared:
            self.register_buffer(name, None, persistent=False)

    # -- the base model's output head (frozen, shared, never saved) --------------------------------
    def bind_output_head(self, base_model: nn.Module) -> None:
        """Share the base model's output head; refuse a base of another shape."""
        check_head_matches_base(self.config, base_model.config)
        self.full_head_weight = base_model.get_output_embeddings().weight.detach()
        self.refresh_head()

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
    def load_config(cls, folder: Path):
        """The folder's configuration, refused in one line when it is not one this class loads."""
        raise NotImplementedError

    @classmethod
    def describe(cls, config) -> str:
        """What the weights must fit, for the message of a missing or unexpected tensor."""
        return f"a {config.method} {cls.noun}"

    @classmethod
    def from_pretrained(cls, folder: str | Path, base_model: nn.Module | None = None):
        """Load strictly (bound to ``base_model`` if given); refuse a head of another kind, made for another
        base model, or a broken export with a one-line reason."""
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{cls.kind} folder {str(folder)!r} not found: pass the folder written by "
                                  f"{cls.written_by}")
        config = cls.load_config(folder)
        if base_model is not None:
            check_head_matches_base(config, base_model.config, folder)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{folder} has no model.safetensors: the {cls.noun} export is incomplete")
        model = cls(config)
        try:
            state = load_file(str(weights))
        except Exception as err:  # safetensors raises several types for a corrupt file
            raise CheckpointError(f"{weights} is unreadable ({err}): re-export the {cls.noun}") from None
        expected = model.state_dict()
        missing, unexpected = set(expected) - set(state), set(state) - set(expected)
        if missing or unexpected:
            raise CheckpointError(f"{weights} does not fit {cls.describe(config)}: missing {sorted(missing)[:4]}, "
                                  f"unexpected {sorted(unexpected)[:4]}")
        wrong = [f"{k} {tuple(v.shape)} (config wants {tuple(expected[k].shape)})"
                 for k, v in sorted(state.items()) if v.shape != expected[k].shape]
        if wrong:
            raise CheckpointError(f"{weights} does not match its config.json: {'; '.join(wrong[:3])}: "
                                  f"re-export the {cls.noun}")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        if base_model is not None:
            model.bind_base(base_model)
        return model


def check_head_matches_base(config, base_config, where: str | Path = "head") -> None:
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
