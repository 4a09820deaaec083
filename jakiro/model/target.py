"""The target (base) model run through its own `transformers` forward with a tree mask.

Prefill runs the prompt causally; verification appends the tree's tokens to the KV cache with a 4-D
mask (each node sees the committed prefix and its own ancestors) at positions ``prefix + depth``.
After acceptance, `commit` keeps the accepted nodes' KV entries and drops the rest.

Early-exit methods (Kangaroo) split the same forward in two on the same cache: `run_shallow` runs the
embedding and decoder layers ``[0, l)`` and returns the raw residual stream; `run_deep` runs layers
``[l, L)`` and the final norm on given hidden states. Both call the model's own layer, rotary and norm
modules, so a split forward computes exactly what the full one does; each layer's KV entries live in
that layer of the one cache, so shallow layers may run ahead of deep ones until `commit` aligns them.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from ..errors import ConfigError
from .fast_linear import PANEL_MAX_ROWS
from .fast_verify import FastVerify, fast_verify_supported, grouped_attention, shared_packed_linears
from .kv_cache import TreeKVCache
from .tree import DraftTree


# Prompts up to this many tokens run through the fused layers. Measured on MT-bench (two threads, idle): prompts
# under 64 tokens 111 vs 131 ms; 64-127 tokens 212 vs 186 ms in 64-row chunks; longer prompts lose more: MKL's
# blocked products over all rows beat the panel kernel once a forward has more rows than a draft tree.
FUSED_PREFILL_ROWS = 64


class NodeLogits:
    """Per-node logits of a verified tree, computed on first access.

    Verification reads only the nodes along the path it walks (at most depth + 1 of them), so the
    output head, a large share of a small model's compute, runs on those rows instead of all N."""

    def __init__(self, hidden: torch.Tensor, lm_head: nn.Module, logits: torch.Tensor | None = None):
        """``logits`` [>= N, V]: rows computed already (the fast forward's one packed product); else lazy."""
        self.hidden, self.lm_head, self.logits = hidden, lm_head, logits
        self._rows: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, node: int) -> torch.Tensor:
        node = int(node)
        if self.logits is not None:
            return self.logits[node]
        if node not in self._rows:
            self._rows[node] = self.lm_head(self.hidden[node])
        return self._rows[node]


class TargetRunner:
    def __init__(self, model: nn.Module):
        self.model = model
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.cache: TreeKVCache | None = None
        self.fast: FastVerify | None = None  # the padded, packed verification forward (`use_fast_verify`)

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
        if self.fast is not None and self.fast.fused is not None:
            self.fast.fused.sync_weights()  # a generation starts: weights changed since the last one are packed again

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask,
                           use_cache=True, **{cache_keyword(self.decoder): self.cache})
        return out.last_hidden_state  # after the final norm: exactly what lm_head consumes

    @torch.no_grad()
    def extend(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal forward of new tokens [1, n] after the cache.

        Returns the logits of the last position only [V] (all that decoding needs; a long prompt's
        other positions would cost n output-head rows) and the features of every position [1, n, H]."""
        start, new = self.length, input_ids.shape[1]
        positions = torch.arange(start, start + new, device=self.device)[None]
        fused = self.fast.fused if self.fast is not None and 1 < new <= FUSED_PREFILL_ROWS else None
        causal = None  # a prompt on an empty cache gets its causal mask from the model itself
        if new > 1 and (start > 0 or fused is not None):
            causal = self._causal(start, new)
        if fused is not None and fused.ready(self.cache, allocate=True):
            hidden = fused.forward(input_ids.to(self.device), positions, causal, self.cache)[None]
        else:
            hidden = self._forward(input_ids, positions, self._additive(causal) if start and causal is not None else None)
        return self.lm_head(hidden[0, -1]), hidden

    def _causal(self, start: int, new: int) -> torch.Tensor:
        """Which keys ``new`` rows after ``start`` cached ones may attend to [new, start + new] (bool)."""
        return torch.ones(new, start + new, dtype=torch.bool, device=self.device).tril(start)

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[None, None]

    @torch.no_grad()
    def verify(self, tree: DraftTree) -> tuple[NodeLogits, torch.Tensor]:
        """One forward over the tree; returns per-node logits (lazy, indexable by node) and features [N, H]."""
        start, size = self.length, len(tree)
        if self.fast is not None and self.fast.fits(size, start, self.cache.capacity):
            return self._verify_padded(tree, start)
        allowed = torch.cat((torch.ones(size, start, dtype=torch.bool, device=self.device),
                             tree.ancestor_mask.to(self.device)), dim=1)
        positions = (tree.depths.to(self.device) + start)[None]
        hidden = self._forward(tree.tokens.to(self.device)[None], positions, self._additive(allowed))[0]
        return NodeLogits(hidden, self.lm_head), hidden

    def use_fast_verify(self, rows: int | None, eager_logits: bool | None = None) -> bool:
        """Verify trees padded to ``rows`` nodes with MKL-packed weights (`fast_verify`); None turns it off.

        Returns whether it is on: only fp32 CPU models on an MKL build of torch qualify. The weights are
        packed on the first verification (about one more copy of them in memory)."""
        self.fast = None
        if rows is not None and rows >= 2 and fast_verify_supported(self.model):
            self.fast = FastVerify(self.model, rows, eager_logits)
        return self.fast is not None

    def _verify_padded(self, tree: DraftTree, start: int) -> tuple[NodeLogits, torch.Tensor]:
        """`verify` through the fast forward: ``fast.rows`` rows (padding after the tree), packed weights."""
        fast, size = self.fast, len(tree)
        fast.prepare()
        tokens, positions, allowed = fast.inputs(tree, start, self.device)
        if fast.fused is not None and fast.fused.ready(self.cache, allocate=True):
            hidden = fast.fused.forward(tokens, positions, allowed, self.cache)
            with fast.linears.active():
                logits = self.lm_head(hidden) if fast.eager_logits else None
            return NodeLogits(hidden[:size], self.lm_head, logits), hidden[:size]
        linears = fast.linears
        if fast.fused is not None:  # a cache the fused layers cannot use: the module forward on packed weights
            linears = shared_packed_linears(self.model)
            linears.pack(fast.rows)
        with linears.active(), grouped_attention():
            hidden = self._forward(tokens, positions, self._additive(allowed))[0]
            logits = self.lm_head(hidden) if fast.eager_logits else None
        return NodeLogits(hidden[:size], self.lm_head, logits), hidden[:size]

    def commit(self, start: int, nodes: list[int]) -> None:
        """Keep the KV entries of the accepted tree nodes (root first) right after the prefix."""
        self.cache.compact(start, torch.tensor(nodes, device=self.device))

    # -- split forwards (early exit) -------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.decoder.layers)

    def check_exit_layer(self, exit_layer: int) -> int:
        """``exit_layer`` as an int in ``1 .. L-1``, or a one-line error; also refuse decoders we cannot split."""
        layers = self.num_layers
        if isinstance(exit_layer, bool) or not isinstance(exit_layer, int) or not 1 <= exit_layer < layers:
            raise ConfigError(f"exit_layer must be an integer in 1..{layers - 1} (the base model has {layers} "
                              f"decoder layers), got {exit_layer!r}")
        missing = [name for name in ("embed_tokens", "layers", "norm", "rotary_emb") if not hasattr(self.decoder, name)]
        if missing:
            raise ConfigError(f"{type(self.decoder).__name__} lacks {missing}: early exit needs a LLaMA-style decoder")
        if "sliding_attention" in (getattr(self.model.config, "layer_types", None) or ()):
            raise ConfigError("early exit does not support sliding-window attention layers: use a model without them")
        return exit_layer

    def layer_length(self, layer: int) -> int:
        """KV entries held by one decoder layer (shallow layers run ahead of deep ones while drafting)."""
        return self.cache.layers[layer].length

    @torch.no_grad()
    def extend_capture(self, input_ids: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`extend` (the full forward) plus the residual stream after the first ``layer`` decoder layers [1, n, H].

        The stream comes from the model's own ``output_hidden_states`` (``hidden_states[layer]``), the
        same tensor `jakiro.ge_data` saves as ``hidden_state_layer{layer}`` for training."""
        start, new = self.length, input_ids.shape[1]
        positions = torch.arange(start, start + new, device=self.device)[None]
        mask = None
        if new > 1 and start > 0:
            mask = self._additive(self._causal(start, new))
        out = self.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask, use_cache=True,
                           output_hidden_states=True, **{cache_keyword(self.decoder): self.cache})
        hidden = out.last_hidden_state
        return self.lm_head(hidden[0, -1]), hidden, out.hidden_states[layer]

    @torch.no_grad()
    def run_shallow(self, input_ids: torch.Tensor, exit_layer: int, positions: torch.Tensor | None = None,
                    block: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding + layers ``[0, exit_layer)`` on ``input_ids`` [1, n]; the raw residual stream [1, n, H].

        ``positions`` [1, n] default to right after the shallow cache. ``block`` [n, m] (bool) says which
        of the last ``m`` keys (this call's n tokens included) each token sees; every earlier key is
        visible. Without it, the tokens attend causally after the cache."""
        hidden = self.decoder.embed_tokens(input_ids.to(self.device))
        return self._run_layers(hidden, 0, exit_layer, positions, block)

    @torch.no_grad()
    def run_deep(self, hidden: torch.Tensor, exit_layer: int, positions: torch.Tensor | None = None,
                 block: torch.Tensor | None = None) -> torch.Tensor:
        """Layers ``[exit_layer, L)`` and the final norm on a residual stream [1, n, H]: the features `lm_head` reads."""
        return self.decoder.norm(self._run_layers(hidden, exit_layer, self.num_layers, positions, block))

    @torch.no_grad()
    def verify_deep(self, tree: DraftTree, shallow: torch.Tensor, exit_layer: int) -> tuple[NodeLogits, torch.Tensor]:
        """`verify` for a tree whose shallow layers already ran (while drafting): only layers ``[l, L)`` run here.

        ``shallow`` [N, H] or [1, N, H] is the residual stream of every node in tree order, whose
        shallow KV entries were written at ``length + node``, exactly where `verify` would put them."""
        start = self.length
        positions = (tree.depths.to(self.device) + start)[None]
        hidden = self.run_deep(shallow.reshape(1, len(tree), -1), exit_layer, positions,
                               tree.ancestor_mask.to(self.device))[0]
        return NodeLogits(hidden, self.lm_head), hidden

    def _run_layers(self, hidden: torch.Tensor, first: int, last: int, positions: torch.Tensor | None,
                    block: torch.Tensor | None) -> torch.Tensor:
        if self.cache is None:
            raise RuntimeError("the target cache is not set up: call reset(capacity) first")
        new = hidden.shape[1]
        past = self.layer_length(first)
        if positions is None:
            positions = torch.arange(past, past + new, device=self.device)[None]
        positions = positions.to(self.device)
        allowed = None
        if block is not None:
            block = block.to(self.device)
            seen = torch.ones(new, past + new - block.shape[1], dtype=torch.bool, device=self.device)
            allowed = torch.cat((seen, block), dim=1)
        elif new > 1:
            allowed = self._causal(past, new)
        fused = self.fast.fused if self.fast is not None else None
        if fused is not None and new <= PANEL_MAX_ROWS and fused.ready(self.cache):
            lengths = {self.layer_length(layer) for layer in range(first, last)}
            if lengths == {past}:  # the early-exit split: a few rows through a range of layers, fused
                return fused.run_layers(hidden, first, last, positions, allowed, self.cache).reshape(hidden.shape)
        mask = None if allowed is None else self._additive(allowed)
        embeddings = self.decoder.rotary_emb(hidden, position_ids=positions)
        for layer in self.decoder.layers[first:last]:
            out = layer(hidden, attention_mask=mask, position_ids=positions, use_cache=True,
                        position_embeddings=embeddings, **{cache_keyword(layer): self.cache})
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def cache_keyword(layer: nn.Module) -> str:
    """The name a decoder (layer) takes its cache by (``cache`` in recent transformers 5.x, else ``past_key_values``)."""
    return _cache_keyword_of(type(layer))


@functools.lru_cache(maxsize=None)
def _cache_keyword_of(layer_class: type) -> str:
    return "cache" if "cache" in inspect.signature(layer_class.forward).parameters else "past_key_values"
