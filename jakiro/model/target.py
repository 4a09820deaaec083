"""The target (base) model run through its own `transformers` forward with a tree mask.

Prefill runs the prompt causally; verification appends the tree's tokens to the KV cache with a 4-D
mask (each node sees the committed prefix and its own ancestors) at positions ``prefix + depth``.
After acceptance, `commit` keeps the accepted nodes' KV entries and drops the rest.
"""

from __future__ import annotations

import torch
from torch import nn

from .kv_cache import TreeKVCache
from .tree import DraftTree


class NodeLogits:
    """Per-node logits of a verified tree, computed on first access.

    Verification reads only the nodes along the path it walks (at most depth + 1 of them), so the
    output head, a large share of a small model's compute, runs on those rows instead of all N."""

    def __init__(self, hidden: torch.Tensor, lm_head: nn.Module):
        self.hidden, self.lm_head = hidden, lm_head
        self._rows: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, node: int) -> torch.Tensor:
        node = int(node)
        if node not in self._rows:
            self._rows[node] = self.lm_head(self.hidden[node])
        return self._rows[node]


class TargetRunner:
    def __init__(self, model: nn.Module):
        self.model = model
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.cache: TreeKVCache | None = None

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def length(self) -> int:
        return self.cache.length

    def reset(self, capacity: int) -> None:
        """Empty the cache, reallocating only when a larger capacity is needed."""
        if self.cache is None or self.cache.capacity < capacity:
            self.cache = TreeKVCache(self.model.config.num_hidden_layers, capacity)
        self.cache.reset()

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask,
                           past_key_values=self.cache, use_cache=True)
        return out.last_hidden_state  # after the final norm: exactly what lm_head consumes

    @torch.no_grad()
    def extend(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal forward of new tokens [1, n] after the cache.

        Returns the logits of the last position only [V] (all that decoding needs; a long prompt's
        other positions would cost n output-head rows) and the features of every position [1, n, H]."""
        start, new = self.length, input_ids.shape[1]
        positions = torch.arange(start, start + new, device=self.device)[None]
        mask = None
        if new > 1 and start > 0:
            allowed = torch.ones(new, start + new, dtype=torch.bool, device=self.device).tril(start)
            mask = self._additive(allowed)
        hidden = self._forward(input_ids, positions, mask)
        return self.lm_head(hidden[0, -1]), hidden

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[None, None]

    @torch.no_grad()
    def verify(self, tree: DraftTree) -> tuple[NodeLogits, torch.Tensor]:
        """One forward over the tree; returns per-node logits (lazy, indexable by node) and features [N, H]."""
        start, size = self.length, len(tree)
        allowed = torch.cat((torch.ones(size, start, dtype=torch.bool, device=self.device),
                             tree.ancestor_mask.to(self.device)), dim=1)
        positions = (tree.depths.to(self.device) + start)[None]
        hidden = self._forward(tree.tokens.to(self.device)[None], positions, self._additive(allowed))[0]
        return NodeLogits(hidden, self.lm_head), hidden

    def commit(self, start: int, nodes: list[int]) -> None:
        """Keep the KV entries of the accepted tree nodes (root first) right after the prefix."""
        self.cache.compact(start, torch.tensor(nodes, device=self.device))
