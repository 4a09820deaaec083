"""The fast verification forward on CPU: the tree padded to a fixed row count, MKL-packed weights for it.

A draft tree of N nodes costs one target forward over N rows. On CPU that forward is memory-bound and
`F.linear` repacks every weight per call (see `fast_linear`), so the forward runs with weights packed
once for exactly ``rows`` rows. To hit that one count every round, a smaller tree is padded: padding
rows carry the root token, attend only to themselves, are never verified (their hidden states are cut
off) and their KV entries are dropped by `commit`, like those of any rejected node. No real row can see
a padding row (the mask hides them), so padding changes nothing but the row count of the products.

LLaMA-style decoders go further: each layer runs as one C++ call (`fused_decoder`), so the glue between
the products (norms, rotary embeddings, cache writes) no longer costs as much as the products themselves.

With few rows the output head (a large share of a small model's weights) is also run once over all
rows with packed weights, instead of once per visited node (`NodeLogits`'s lazy rows, each a full read),
and attention reads grouped-query K/V without copying them per head (`grouped_attention`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .fast_linear import PackedLinears, decoder_linears, mkl_packing_available
from .fused_decoder import shared_fused_decoder
from .tree import DraftTree

GQA_SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"  # transformers' own switch: SDPA reads grouped K/V as they are
EAGER_LOGIT_ROWS = 16  # up to this many rows one packed product of the output head beats per-node products

_SHARED: "weakref.WeakKeyDictionary[nn.Module, PackedLinears]" = weakref.WeakKeyDictionary()
_SHARED_HEADS: "weakref.WeakKeyDictionary[nn.Module, PackedLinears]" = weakref.WeakKeyDictionary()


def shared_packed_linears(model: nn.Module) -> PackedLinears:
    """One `PackedLinears` per base model (decoder linears + output head), shared by every runner on it,
    so several heads on one base (the benchmark's contenders) hold one packed copy per row count."""
    if model not in _SHARED:
        modules = decoder_linears(model)
        head = model.get_output_embeddings()
        if isinstance(head, nn.Linear):
            modules.append(head)
        _SHARED[model] = PackedLinears(modules)
    return _SHARED[model]


def shared_packed_head(model: nn.Module) -> PackedLinears:
    """The output head alone, packed (the fused decoder holds the layers' weights itself)."""
    if model not in _SHARED_HEADS:
        head = model.get_output_embeddings()
        _SHARED_HEADS[model] = PackedLinears([head] if isinstance(head, nn.Linear) else [])
    return _SHARED_HEADS[model]


def fast_verify_supported(model: nn.Module) -> bool:
    """The fast forward applies: fp32 weights on CPU and a torch build with MKL's packed linear ops."""
    weight = model.get_output_embeddings().weight
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and mkl_packing_available()


@contextmanager
def grouped_attention() -> Iterator[None]:
    """Let `transformers`' SDPA attention read grouped-query K/V directly (``enable_gqa``) for a tree's rows.

    By default it copies every layer's cached keys and values ``heads / kv_heads`` times (``repeat_kv``)
    whenever a mask is given and more than one row is queried: for a tree after a few hundred cached tokens
    that is tens of MB written per forward. The result is the same attention (the kernel reads each K/V
    head for its group of query heads). Set only during the block, unless the user set it already."""
    if GQA_SWITCH in os.environ:
        yield
        return
    os.environ[GQA_SWITCH] = "1"
    try:
        yield
    finally:
        os.environ.pop(GQA_SWITCH, None)


class FastVerify:
    """Settings and state of the padded, packed verification forward of one `TargetRunner`."""

    def __init__(self, model: nn.Module, rows: int, eager_logits: bool | None = None):
        if rows < 2:
            raise ValueError(f"the fast verification forward needs a tree budget of at least 2 rows, got {rows}")
        self.rows = rows
        self.eager_logits = rows <= EAGER_LOGIT_ROWS if eager_logits is None else eager_logits
        # LLaMA-style decoders run each layer as one fused call (`fused_decoder`); others layer by layer
        self.fused = shared_fused_decoder(model)
        self.linears = shared_packed_head(model) if self.fused is not None else shared_packed_linears(model)
        self.padded_rounds = 0  # rounds whose tree was padded (tests check padding really ran)

    def fits(self, size: int, start: int, capacity: int) -> bool:
        """A tree of ``size`` nodes after ``start`` cached positions can run padded to ``rows``."""
        return size <= self.rows and start + self.rows <= capacity

    def prepare(self) -> None:
        """Pack the weights for ``rows`` (first use only; about one weight copy of memory)."""
        self.linears.pack(self.rows)

    def inputs(self, tree: DraftTree, start: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids [1, rows], positions [1, rows] and the boolean mask [rows, start + rows] of the padded tree."""
        size, pad = len(tree), self.rows - len(tree)
        tokens = tree.tokens.to(device)
        positions = tree.depths.to(device) + start
        allowed = torch.zeros(self.rows, start + self.rows, dtype=torch.bool, device=device)
        allowed[:size, :start] = True
        allowed[:size, start:start + size] = tree.ancestor_mask.to(device)
        if pad:
            self.padded_rounds += 1
            tokens = torch.cat((tokens, tokens[:1].expand(pad)))
            positions = torch.cat((positions, positions[:1].expand(pad)))
            allowed[size:, start + size:].fill_diagonal_(True)  # a padding row sees only itself
        return tokens[None], positions[None], allowed
