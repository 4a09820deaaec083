"""A preallocated KV cache for the target model that plugs into `transformers`' Cache API.

Each layer owns one key and one value buffer of ``capacity`` positions, allocated on first use.
A forward writes its new entries after the current length and attends to a view of the filled
prefix, so a tree of candidate tokens is appended like any other tokens. After verification,
`compact` moves the accepted entries next to the committed prefix and drops the rest, in place.
Layers keep their own lengths: an early-exit drafter (Kangaroo) fills the shallow layers ahead of the
deep ones, and `compact` (or `crop`) brings every layer back to the same committed length.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class PreallocatedLayer(CacheLayerMixin):
    """One layer's buffers of shape ``[batch, kv_heads, capacity, head_dim]`` and a fill length."""

    is_sliding = False
    is_croppable = True

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, head_dim = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states.new_zeros(batch, heads, self.capacity, head_dim)
        self.values = value_states.new_zeros(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} positions needed, capacity {self.capacity}")
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.capacity

    def reset(self) -> None:
        self.length = 0

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)

    def crop_or_extend(self, length: int) -> None:
        """Set the fill length (entries up to it are valid: written by the last forward)."""
        self.length = length

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (batched generation drops the sequences that finished)."""
        if self.is_initialized:
            self.keys, self.values = self.keys.index_select(0, rows), self.values.index_select(0, rows)

    def compact(self, start: int, source: torch.Tensor) -> None:
        """Copy entries ``start + source`` to ``start .. start+len(source)`` and set the length there."""
        if self.is_initialized and len(source):
            index = source + start
            self.keys[:, :, start:start + len(source)] = self.keys.index_select(2, index)
            self.values[:, :, start:start + len(source)] = self.values.index_select(2, index)
        self.length = start + len(source)


class TreeKVCache(Cache):
    """The target's cache: preallocated layers plus the compaction step of tree verification."""

    def __init__(self, num_layers: int, capacity: int):
        super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])
        self.capacity = capacity

    @property
    def length(self) -> int:
        """Positions every layer holds: the committed prefix (early-exit drafting runs shallow layers ahead)."""
        return min(layer.length for layer in self.layers)

    def layer_lengths(self) -> list[int]:
        return [layer.length for layer in self.layers]

    def crop(self, length: int) -> None:
        for layer in self.layers:
            layer.crop(length)

    def reset(self) -> None:
        for layer in self.layers:
            layer.reset()

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows in every layer."""
        for layer in self.layers:
            layer.keep_rows(rows)

    def compact(self, start: int, source: torch.Tensor) -> None:
        """Keep the entries at offsets ``source`` (relative to ``start``) right after ``start``; drop the rest.

        Entries already in place (the root, and a path through the first child at each level) are not
        copied: when every kept entry is, compaction only sets the lengths."""
        offsets = source.tolist()
        kept = 0
        while kept < len(offsets) and offsets[kept] == kept:
            kept += 1
        if kept == len(offsets):
            for layer in self.layers:
                layer.crop_or_extend(start + kept)
            return
        moved = source[kept:]
        for layer in self.layers:
            layer.compact(start + kept, moved - kept)
