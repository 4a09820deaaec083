"""Pre-packed MKL weights for a model's linear layers: fast matrix products of a fixed row count on CPU.

For an input of more than one row, `F.linear` on CPU calls MKL's sgemm, which repacks the whole weight
matrix on every call. For the few rows of a draft tree the product is memory-bound, so that repacking
(one more read and one write of every weight) costs about as much as the product itself. MKL can pack a
weight once for a given row count (``torch.ops.mkl._mkl_reorder_linear_weight``: what inductor's
freezing does); ``torch.ops.mkl._mkl_linear`` then reads the packed copy. The weights stay the model's
own fp32 values (no quantisation); only the order of the additions differs from `F.linear`, as it
already does between MKL's gemv (one row) and sgemm (several rows).

Better still is the panel kernel (`panel_gemm`, built once per machine): one copy of the weights laid
out for it serves every row count up to `PANEL_MAX_ROWS`, and 8 rows cost about what MKL's one-row gemv
does. `PackedLinears` uses it where it builds (backend ``"panels"``) and MKL's packing otherwise (backend
``"mkl"``; ``JAKIRO_FAST_KERNEL=mkl`` forces it).

Inside `PackedLinears.active()` the ``forward`` of the given `nn.Linear` modules is swapped for one that
uses the packed copy when the input has a packed row count and autograd is off; every other call runs
the module's own forward. Leaving the block restores the modules exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

PANEL_MAX_ROWS = 64  # the panel kernel serves inputs of 2..64 rows (more rows: MKL's own blocking wins)
BACKENDS = ("panels", "mkl")


_NONE = object()  # "the module had no forward of its own" (the usual case: its class's forward runs)


def mkl_packing_available() -> bool:
    """True where this torch build has MKL and its packed-weight linear ops (x86 CPU builds)."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        return hasattr(torch.ops.mkl, "_mkl_linear") and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")
    except (AttributeError, RuntimeError):
        return False


def decoder_linears(model: nn.Module) -> list[nn.Linear]:
    """Every `nn.Linear` inside the decoder layers of a `transformers` causal LM (not the output head)."""
    layers = model.get_decoder().layers
    return [module for module in layers.modules() if isinstance(module, nn.Linear)]


class PackedLinears:
    """Packed copies of some linear layers' weights, one set per row count, used inside `active()`.

    Each packed set holds a copy of every weight (MKL's layout), so memory grows by the weights' size
    per row count; pack only the counts that are actually run (a draft tree padded to its budget)."""

    def __init__(self, modules: Iterable[nn.Linear], backend: str | None = None):
        """``backend``: ``"panels"``, ``"mkl"`` or None (panels where the kernel builds, else MKL; the
        environment variable ``JAKIRO_FAST_KERNEL=mkl`` forces MKL)."""
        self.modules = list(modules)
        for module in self.modules:
            if not isinstance(module, nn.Linear):
                raise TypeError(f"PackedLinears takes nn.Linear modules, got {type(module).__name__}")
        if backend not in (None, *BACKENDS):
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
        self.requested_backend = backend
        self._kernel = None  # the panel kernel's module once loaded
        self._backend: str | None = None
        self._panels: list[torch.Tensor] | None = None
        self._packed: dict[int, list[torch.Tensor]] = {}
        self._versions: list[tuple[int, int]] = []
        self._active = 0
        self._stale = False
        self.packed_calls = 0  # products that ran on packed weights (tests check the fast path really ran)
        self._forwards = [self._forward_of(index, module) for index, module in enumerate(self.modules)]
        self._saved: list[object] = []

    @property
    def rows(self) -> tuple[int, ...]:
        """The row counts that have packed weights (every count in 2..`PANEL_MAX_ROWS` with panels)."""
        if self._panels is not None:
            return tuple(range(2, PANEL_MAX_ROWS + 1))
        return tuple(sorted(self._packed))

    @property
    def backend(self) -> str:
        """``"panels"`` or ``"mkl"``: decided (and the kernel built or loaded) on first use."""
        if self._backend is None:
            wanted = self.requested_backend or os.environ.get("JAKIRO_FAST_KERNEL") or None
            if wanted not in (None, *BACKENDS):
                wanted = None
            if wanted in (None, "panels"):
                from . import panel_gemm

                self._kernel = panel_gemm.load()
            self._backend = "panels" if self._kernel is not None else "mkl"
        return self._backend

    def _weight_versions(self) -> list[tuple[int, int]]:
        return [(m.weight.data_ptr(), m.weight._version) for m in self.modules]

    @torch.no_grad()
    def pack(self, rows: int) -> None:
        """Pack every weight for inputs of exactly ``rows`` rows (``rows`` >= 2; one row runs MKL's gemv)."""
        if rows < 2:
            raise ValueError(f"pack row counts of 2 or more (one row needs no packing), got {rows}")
        panels = self.backend == "panels" and rows <= PANEL_MAX_ROWS
        if not self._stale and (self._panels is not None if panels else rows in self._packed):
            return
        versions = self._weight_versions()
        if self._versions and versions != self._versions:  # weights changed since the last pack: repack all
            self._packed.clear()
            self._panels = None
        self._versions, self._stale = versions, False
        if panels and self._panels is None:
            self._panels = [self._kernel.pack_panels(m.weight.detach().contiguous()) for m in self.modules]
        elif not panels and rows not in self._packed:
            self._packed[rows] = [torch.ops.mkl._mkl_reorder_linear_weight(m.weight.detach(), rows)
                                  for m in self.modules]

    def release(self, keep_panels: bool = False) -> None:
        """Free the packed copies (the panels too unless ``keep_panels``); the modules keep their own forward."""
        self._packed.clear()
        if not keep_panels:
            self._panels = None

    @contextmanager
    def active(self) -> Iterator[None]:
        """Inside this block, the modules' calls with a packed row count use the packed weights.

        The modules' ``forward`` is swapped only for the block and restored after it, so code running
        outside (``generate``, training) never sees the swap."""
        outermost = self._active == 0
        if outermost:
            self._saved = [module.__dict__.get("forward", _NONE) for module in self.modules]
            for module, forward in zip(self.modules, self._forwards):
                module.forward = forward
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if outermost:
                for module, saved in zip(self.modules, self._saved):
                    if saved is _NONE:
                        del module.forward
                    else:
                        module.forward = saved

    def _forward_of(self, index: int, module: nn.Linear):
        own = type(module).forward.__get__(module)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if self._active and not torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type == "cpu":
                rows = x.numel() // x.shape[-1]
                if self._panels is not None and 2 <= rows <= PANEL_MAX_ROWS and self._current(index, module):
                    self.packed_calls += 1
                    return self._kernel.panel_linear(x, self._panels[index], module.out_features, module.bias)
                packed = self._packed.get(rows)
                if packed is not None and self._current(index, module):
                    self.packed_calls += 1
                    return torch.ops.mkl._mkl_linear(x, packed[index], module.weight, module.bias, rows)
            return own(x)

        return forward

    def _current(self, index: int, module: nn.Linear) -> bool:
        """The packed copy still matches the weight (not replaced or modified in place since packing)."""
        weight = module.weight
        if self._versions[index] == (weight.data_ptr(), weight._version):
            return True
        self._stale = True  # the next `pack` repacks
        return False


def onednn_packing_available() -> bool:
    """True where this torch build has oneDNN's packed-weight linear ops (x86 CPU builds)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    except (AttributeError, RuntimeError):
        return False


def onednn_product(weight: torch.Tensor, bias: torch.Tensor | None = None):
    """``x -> x @ weight.T + bias`` through a oneDNN-packed copy of ``weight`` (packed now, any row count).

    For frozen bf16 weights on CPU: oneDNN's AMX kernels otherwise reorder the weight on every call,
    which for the few rows of drafting costs more than the product. The result equals `F.linear`'s.
    Autograd runs `F.linear` on the original weight."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)

    def product(x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != weight.dtype:
            return torch.nn.functional.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")

    return product
