"""The strongest plain baseline `transformers` itself offers: ``generate`` with a static KV cache and a
compiled forward, as its "Optimizing inference" guide documents::

    model.generation_config.cache_implementation = "static"
    model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)

(with ``dynamic=True``, as the guide's `CompileConfig` example, so prompt lengths do not recompile).
Compiling takes a while (tens of seconds per new shape on a small CPU), so the compiled artefacts live
on disk under ``$JAKIRO_HOME/compile-cache`` (inductor's cache; a user's own ``TORCHINDUCTOR_CACHE_DIR``
wins) and the first call says what it is doing. The compiled forward is swapped onto the shared base
model only for the duration of this engine's own ``generate`` calls, so no other contender runs it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

COMPILE_MODE = "reduce-overhead"  # the guide's setting; on CPU inductor runs its default pipeline (no CUDA graphs)


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled artefacts: ``$TORCHINDUCTOR_CACHE_DIR`` if set, else under ``$JAKIRO_HOME``."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from ..base_models import jakiro_home

    own = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if own and os.path.abspath(own) != os.path.abspath(default_cache_dir()):  # torch writes its default back
        return Path(own)
    return jakiro_home() / "compile-cache"


def use_disk_compile_cache() -> Path:
    """Point inductor (and its FX graph / AOT autograd caches) at `compile_cache_dir` before anything compiles."""
    folder = compile_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


class CompiledForward:
    """A model's forward compiled once (lazily), swapped onto the model only inside `swapped()`."""

    def __init__(self, model: nn.Module, mode: str = COMPILE_MODE, fullgraph: bool = True, dynamic: bool = True):
        """``dynamic``: one graph with symbolic prompt and cache lengths (else every new prompt length of
        the first few calls recompiles, tens of seconds each, inside timed runs)."""
        self.model, self.mode, self.fullgraph, self.dynamic = model, mode, fullgraph, dynamic
        self._compiled = None
        self.calls = 0

    def _build(self):
        folder = use_disk_compile_cache()
        print(f"jakiro: compiling {type(self.model).__name__}.forward with torch.compile (mode={self.mode!r}, "
              f"static KV cache) for the hf-compiled baseline: a minute or more the first time, seconds once "
              f"the on-disk cache {folder} holds it", file=sys.stderr, flush=True)
        return torch.compile(self.model.forward, mode=self.mode, fullgraph=self.fullgraph, dynamic=self.dynamic)

    @contextmanager
    def swapped(self):
        """The model's ``forward`` is the compiled one inside this block (`generate` calls it), restored after."""
        if self._compiled is None:
            self._compiled = self._build()
        saved = self.model.__dict__.get("forward")
        self.model.forward = self._compiled
        self.calls += 1
        try:
            yield
        finally:
            if saved is None:
                del self.model.forward
            else:
                self.model.forward = saved
