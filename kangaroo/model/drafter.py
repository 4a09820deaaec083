"""Kangaroo drafting: the base model's shallow layers plus the adapter propose; the deep layers verify.

One round, with ``P`` committed positions and the root (the token the target just produced) at P:

1. the shallow layers ``[0, l)`` run on the root (the target's own cache, layers < l, slot P);
2. the adapter reads the shallow stream (plus any accepted position it has not read yet), and the
   output head gives the next token: its argmax continues the chain; with the tree option the
   runner-up candidates of the first ``tree_levels`` drafted positions join as extra leaves;
3. the shallow layers run on the new level (chain token and leaves, under a tree mask), and so on,
   until the second early exit (`early_exit.draft_more`) stops the chain;
4. verification (`verify_forward`) runs only the deep layers ``[l, L)`` on the shallow states of
   every node; the core verifier accepts (greedy or recursive rejection sampling with q = 1, since
   the drafts are deterministic), and `TargetRunner.commit` keeps the accepted nodes' KV entries in
   every layer;
5. `accept` rolls the adapter's own cache back to the accepted chain positions it has read; accepted
   positions it has not read (the chain's last token, a leaf) are fed to it at the start of the next round.

Tree node order: root, then level by level (chain token first, then its siblings), so the shallow
KV slots written while drafting are exactly the slots `verify` would have used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jakiro.errors import ConfigError
from jakiro.model.drafter import Drafter
from jakiro.model.kv_cache import PreallocatedLayer
from jakiro.model.target import NodeLogits, TargetRunner
from jakiro.model.tree import DraftTree

from .adapter import KangarooAdapter
from .config import check_steps, check_threshold
from .early_exit import draft_more

OPTIONS = ("threshold", "steps", "exit_layer", "tree_levels", "tree_width")


@dataclass
class _Round:
    """What one proposal left for verification and acceptance."""

    tree: DraftTree
    shallow: torch.Tensor   # [1, N, H] shallow residual stream of every node, tree order
    start: int              # committed positions when the round began
    chain: list[int]        # chain node per depth (chain[0] = root)
    read: int               # chain nodes the adapter read this round (their entries are in its cache)


class KangarooDrafter(Drafter):
    """Self-drafting with the target's first ``exit_layer`` layers and a trained adapter."""

    def __init__(self, adapter: KangarooAdapter, target: TargetRunner, threshold: float | None = None,
                 steps: int | None = None, exit_layer: int | None = None, tree_levels: int = 0, tree_width: int = 2):
        config = adapter.config
        self.adapter, self.target = adapter, target
        self.threshold = check_threshold(config.threshold if threshold is None else threshold)
        self.steps = check_steps(config.steps if steps is None else steps)
        self.exit_layer = target.check_exit_layer(config.exit_layer if exit_layer is None else exit_layer)
        if isinstance(tree_levels, bool) or not isinstance(tree_levels, int) or tree_levels < 0:
            raise ConfigError(f"tree_levels must be an integer >= 0 (0 = a chain), got {tree_levels!r}")
        if isinstance(tree_width, bool) or not isinstance(tree_width, int) or tree_width < 1:
            raise ConfigError(f"tree_width must be an integer >= 1, got {tree_width!r}")
        self.tree_levels = min(tree_levels, self.steps)
        self.tree_width = min(tree_width, adapter.draft_vocab_size)
        self.cache: PreallocatedLayer | None = None
        self.pending: torch.Tensor | None = None
        self._prompt_stream: torch.Tensor | None = None
        self._round: _Round | None = None
        self.reset_statistics()  # running totals of drafting work, for cost measurements (compare, sweep)

    # -- reporting -------------------------------------------------------------------------------
    @property
    def forwards_per_round(self) -> int:
        return self.steps  # adapter forwards at most (the second early exit usually stops sooner)

    @property
    def max_path_drafts(self) -> int:
        return self.steps

    @property
    def max_tree_tokens(self) -> int:
        """The largest tree one round verifies (root included): what the KV cache must leave room for."""
        return 1 + self.steps + self.tree_levels * (self.tree_width - 1)

    def settings(self) -> dict:
        return {"threshold": self.threshold, "steps": self.steps, "exit_layer": self.exit_layer,
                "tree_levels": self.tree_levels, "tree_width": self.tree_width}

    def statistics(self) -> dict:
        """Rounds, drafted (chain) tokens and verified tree nodes since `reset_statistics`, and per round."""
        rounds = self.counts["rounds"]
        if not rounds:
            return {}
        return {**self.counts, "drafted_per_round": self.counts["drafted"] / rounds,
                "nodes_per_round": self.counts["nodes"] / rounds}

    def reset_statistics(self) -> None:
        self.counts = {"rounds": 0, "drafted": 0, "nodes": 0}

    # -- the target's forwards -------------------------------------------------------------------
    def prefill(self, target: TargetRunner, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The full forward over the prompt, keeping the exit layer's stream for the adapter."""
        logits, features, stream = target.extend_capture(input_ids, self.exit_layer)
        self._prompt_stream = stream
        return logits, features

    def verify_forward(self, target: TargetRunner, tree: DraftTree) -> tuple[NodeLogits, torch.Tensor]:
        """Only the deep layers, on the shallow states computed while drafting this tree."""
        if self._round is None or self._round.tree is not tree:
            raise RuntimeError("Kangaroo verifies only the tree it proposed last")
        return target.verify_deep(tree, self._round.shallow, self.exit_layer)

    # -- the drafter interface -------------------------------------------------------------------
    def start(self, input_ids: torch.Tensor, features: torch.Tensor, capacity: int) -> None:
        self.cache = PreallocatedLayer(capacity + self.steps + 2)
        self.pending = self._prompt_stream  # the adapter reads the prompt's stream with the first root
        self._prompt_stream, self._round = None, None

    def _next(self, shallow: torch.Tensor, width: int) -> tuple[list[int], float]:
        """The adapter on the newest chain node's stream: the top-``width`` target ids and the top probability."""
        stream = shallow if self.pending is None else torch.cat((self.pending.to(shallow.dtype), shallow), dim=1)
        self.pending = None
        predicted = self.adapter(stream, cache=self.cache, last_only=True)
        probs = torch.softmax(self.adapter.logits(predicted[0, -1]).float(), dim=-1)
        top, index = probs.topk(width)
        return self.adapter.to_target_ids(index).tolist(), float(top[0])

    @torch.no_grad()
    def propose(self, root_token: int) -> DraftTree:
        target, device = self.target, self.target.device
        start = target.length
        if self.cache.length + (0 if self.pending is None else self.pending.shape[1]) != start:
            raise RuntimeError("the adapter cache is out of step with the target cache")
        size = self.max_tree_tokens
        ancestors = torch.zeros(size, size, dtype=torch.bool, device=device)
        ancestors[0, 0] = True
        tokens, parents, chain = [root_token], [-1], [0]
        level, streams = (0, 1), []
        drafted, confidence = 0, None
        while True:
            a, b = level
            positions = torch.full((1, b - a), start + drafted, device=device)
            streams.append(target.run_shallow(torch.tensor([tokens[a:b]], device=device), self.exit_layer,
                                              positions, ancestors[a:b, :b]))
            if not draft_more(drafted, confidence, self.threshold, self.steps):
                break
            width = self.tree_width if drafted < self.tree_levels else 1
            ids, confidence = self._next(streams[-1][:, :1], width)  # the chain node leads its level
            parent = chain[-1]
            for token in ids:
                node = len(tokens)
                tokens.append(token)
                parents.append(parent)
                ancestors[node] = ancestors[parent]
                ancestors[node, node] = True
            chain.append(b)
            level, drafted = (b, len(tokens)), drafted + 1
        tree = DraftTree(tokens=torch.tensor(tokens, device=device), parents=torch.tensor(parents, device=device))
        self._round = _Round(tree, torch.cat(streams, dim=1), start, chain, read=drafted)
        self.counts["rounds"] += 1
        self.counts["drafted"] += drafted
        self.counts["nodes"] += len(tokens) - 1
        return tree

    def accept(self, accepted_ids: torch.Tensor, accepted_features: torch.Tensor) -> None:
        """Keep the adapter's entries of accepted chain positions; queue the accepted ones it has not read."""
        round_ = self._round
        tree, ids = round_.tree, accepted_ids[0].tolist()
        tokens = tree.tokens.tolist()
        path = [0]
        for token in ids[1:]:
            path.append(next(c for c in tree.children(path[-1]) if tokens[c] == token))
        kept = 0
        while kept < min(len(path), round_.read) and path[kept] == round_.chain[kept]:
            kept += 1
        self.cache.crop(round_.start + kept)
        rest = path[kept:]
        self.pending = round_.shallow[:, rest] if rest else None


def make_kangaroo_drafter(ea_model) -> KangarooDrafter:
    """The registry's factory: the adapter's drafting defaults, overridden by ``ea_model.drafter_options``."""
    options = dict(getattr(ea_model, "drafter_options", {}) or {})
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"unknown Kangaroo option(s) {sorted(unknown)}: use {', '.join(OPTIONS)}")
    return KangarooDrafter(ea_model.ea_layer, ea_model._target, **options)
