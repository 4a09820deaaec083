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

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None):
        out = self.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask,
                           past_key_values=self.cache, use_cache=True)
        hidden = out.last_hidden_state  # after the final norm: exactly what lm_head consumes
        return self.lm_head(hidden), hidden

    @torch.no_grad()
    def extend(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal forward of new tokens [1, n] after the cache; returns logits [1,n,V] and features [1,n,H]."""
        start, new = self.length, input_ids.shape[1]
        positions = torch.arange(start, start + new, device=self.device)[None]
        mask = None
        if new > 1 and start > 0:
            allowed = torch.ones(new, start + new, dtype=torch.bool, device=self.device).tril(start)
            mask = self._additive(allowed)
        return self._forward(input_ids, positions, mask)

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[None, None]

    @torch.no_grad()
    def verify(self, tree: DraftTree) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over the tree; returns logits [N, V] and features [N, H] per node."""
        start, size = self.length, len(tree)
        allowed = torch.cat((torch.ones(size, start, dtype=torch.bool, device=self.device),
                             tree.ancestor_mask.to(self.device)), dim=1)
        positions = (tree.depths.to(self.device) + start)[None]
        logits, hidden = self._forward(tree.tokens.to(self.device)[None], positions, self._additive(allowed))
        return logits[0], hidden[0]

    def commit(self, start: int, nodes: list[int]) -> None:
        """Keep the KV entries of the accepted tree nodes (root first) right after the prefix."""
        self.cache.compact(start, torch.tensor(nodes, device=self.device))
