"""Shipped draft heads, addressed by alias (installed with the package under ``jakiro/heads/``)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

HEADS_DIR = Path(__file__).resolve().parent / "shipped_heads"
HEAD_ALIASES = {
    "jakiro-smollm2-135m-instruct": "jakiro-smollm2-135m-instruct",
    "eagle2-smollm2-135m-instruct": "eagle2-smollm2-135m-instruct",
    "jakiro-star-smollm2-135m-instruct": "jakiro-star-smollm2-135m-instruct",
    "kangaroo-smollm2-135m-instruct": "kangaroo-smollm2-135m-instruct",
}


def resolve_head_path(path_or_alias: str | os.PathLike) -> Path:
    """A draft-head folder for a path or a shipped alias; a clear error when neither exists."""
    name = str(path_or_alias)
    if name in HEAD_ALIASES:
        folder = HEADS_DIR / HEAD_ALIASES[name]
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"shipped head {name!r} is not installed in {folder}: reinstall jakiro")
        return folder
    folder = Path(name)
    if not folder.is_dir():
        known = ", ".join(HEAD_ALIASES)
        raise CheckpointError(f"draft head {name!r} not found: pass a head folder or one of the aliases {known}")
    return folder


def stored_float_dtype(folder: Path) -> "torch.dtype | None":
    """The dtype the head's floating-point weights are stored in (a bf16 export stays bf16)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        for name in handle.keys():
            tensor = handle.get_slice(name)
            dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}.get(tensor.get_dtype())
            if dtype is not None:
                return dtype
    return None
