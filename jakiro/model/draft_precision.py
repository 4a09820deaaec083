"""The draft head with bf16 weights: cheaper drafting on CPU, lossless all the same.

Drafting never decides what is emitted (verification does, against the target's own fp32 logits), so
the head may draft with rounded weights without touching losslessness: the candidates stay
deterministic top-k picks, which is all the rejection sampler assumes (q(x) = 1). On CPU the head's
forwards are bound by streaming its weights (the draft-vocabulary output head above all), so half the
bytes make drafting cheaper. Acceptance can move slightly, as bf16 rounds the draft scores.

Two ways, by what this machine has:

* the panel kernel (`panel_gemm`, also used by verification): every product of the head reads its
  weights as bf16 panels and computes in fp32; activations, norms and the draft KV cache stay fp32;
* otherwise, on a CPU with native bf16 (AMX/AVX512-BF16): the whole head in bf16, its products through
  oneDNN with weights packed once.

`DraftCopy` holds the converted copy and rebuilds it whenever the head's own weights change (training,
a loaded checkpoint, a test hand-setting them), so the copy never drafts with stale weights.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ..base_models import parse_dtype
from ..errors import ConfigError
from .fast_linear import onednn_packing_available, onednn_product

SHARED_BUFFERS = ("embed_weight", "full_head_weight")  # base-model tensors: shared with the copy, never converted
CONVERTED_BUFFERS = ("head_weight",)  # the draft-vocabulary output head; other buffers (RoPE frequencies) stay


@lru_cache(maxsize=1)
def native_bf16_cpu() -> bool:
    """The CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16), so bf16 products are not emulated."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = next((line for line in cpuinfo.read_text(errors="replace").splitlines() if line.startswith("flags")), "")
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def _panel_kernel():
    from . import panel_gemm

    return panel_gemm.load()


def resolve_draft_dtype(head: nn.Module, requested: str | torch.dtype | None) -> torch.dtype:
    """The dtype of the weights the head drafts with: ``auto``/None = bf16 for an fp32 head on CPU where the
    panel kernel builds or the CPU has native bf16, else the head's own."""
    own = next(head.parameters()).dtype
    if requested is None or requested == "auto":
        device = next(head.parameters()).device
        cheaper = device.type == "cpu" and own == torch.float32 and (_panel_kernel() is not None or native_bf16_cpu())
        return torch.bfloat16 if cheaper else own
    try:
        return parse_dtype(requested)
    except ConfigError:
        raise ConfigError(f"draft_dtype {requested!r} is not a dtype: use auto, float32, bfloat16 or float16") from None


class DraftCopy:
    """The head with ``dtype`` weights (or the head itself when it already has them), kept in step with its weights.

    ``activation_dtype`` is the dtype its inputs (the target's features) must have."""

    def __init__(self, head: nn.Module, dtype: torch.dtype):
        self.head, self.dtype = head, dtype
        own = next(head.parameters()).dtype
        self.converts = own != dtype
        on_cpu = next(head.parameters()).device.type == "cpu"
        self.kernel = _panel_kernel() if self.converts and on_cpu and own == torch.float32 and dtype == torch.bfloat16 \
            else None
        self.activation_dtype = own if self.kernel is not None or not self.converts else dtype
        self._copy: nn.Module | None = None
        self._versions: list[tuple[int, int]] = []

    def _head_versions(self) -> list[tuple[int, int]]:
        tensors = [t for t in (*self.head.parameters(), *self.head.buffers()) if t is not None]
        return [(t.data_ptr(), t._version) for t in tensors]

    def get(self) -> nn.Module:
        """The module to draft with (rebuilt first if the head's weights changed since the last call)."""
        if not self.converts:
            return self.head
        versions = self._head_versions()
        if self._copy is None or versions != self._versions:
            self._copy, self._versions = self._convert(), versions
        return self._copy

    def _clone(self) -> nn.Module:
        shared = {name: getattr(self.head, name, None) for name in SHARED_BUFFERS}
        memo = {id(t): t for t in shared.values() if t is not None}  # deepcopy shares these instead of copying
        return copy.deepcopy(self.head, memo)

    @torch.no_grad()
    def _convert(self) -> nn.Module:
        clone = self._clone().eval().requires_grad_(False)
        if self.kernel is not None:  # fp32 module, bf16 weight panels behind every product
            route_through_panels(clone, self.kernel, self.dtype)
            return clone
        for module in clone.modules():
            for param in module.parameters(recurse=False):
                param.data = param.data.to(self.dtype)
            for name in CONVERTED_BUFFERS:  # by name: it may be the very tensor of a shared buffer
                buffer = module._buffers.get(name)
                if buffer is not None and buffer.is_floating_point():
                    module._buffers[name] = buffer.to(self.dtype)
        on_cpu = next(clone.parameters()).device.type == "cpu"
        if self.dtype == torch.bfloat16 and on_cpu and onednn_packing_available():
            pack_frozen_copy(clone)
        return clone


def _panel_product(kernel, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
    panels = kernel.pack_panels(weight.detach().to(dtype).contiguous())
    rows_out = weight.shape[0]

    def product(x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32:
            return torch.nn.functional.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
        return kernel.panel_linear(x, panels, rows_out, bias)

    return product


def route_through_panels(head: nn.Module, kernel, dtype: torch.dtype) -> None:
    """Every `nn.Linear` of a private, frozen fp32 copy, and its ``logits``, read ``dtype`` weight panels."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.forward = _panel_product(kernel, module.weight, module.bias, dtype)
    if isinstance(getattr(head, "head_weight", None), torch.Tensor):
        head.logits = _panel_product(kernel, head.head_weight, None, dtype)


def pack_frozen_copy(head: nn.Module) -> None:
    """Route a private, frozen bf16 copy's products through oneDNN-packed weights (see `onednn_product`):
    every `nn.Linear`, and the draft-vocabulary output head behind ``logits``."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.forward = onednn_product(module.weight, module.bias)
    if isinstance(getattr(head, "head_weight", None), torch.Tensor):
        head.logits = onednn_product(head.head_weight)
