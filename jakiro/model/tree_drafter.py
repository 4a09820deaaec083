"""EAGLE-2 dynamic-tree drafting with Jakiro's hybrid last level (CEPD).

Each round: one forward of the draft head over the newly verified positions gives the level-1
candidates; every further level expands only the ``top_k`` best nodes of the previous level (by
cumulative draft log-probability) into their ``top_k`` children. With CEPD, the forward that
produces level ``depth`` also yields the contrastive branch, which looks two tokens ahead: its top-k
become the children of the nodes selected at level ``depth`` without another draft forward. The
tree handed to the target keeps the ``total_token - 1`` best candidates of the whole pool.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .cnets import JakiroDraftModel
from .draft_precision import DraftCopy, resolve_draft_dtype
from .drafter import Drafter
from .kv_cache import PreallocatedLayer
from .tree import CandidatePool, DraftTree


def levels_within_budget(depth: int, total_token: int, free_last_level: bool) -> int:
    """The levels worth drafting: ``depth``, capped where deeper levels could never be selected.

    A node at level L has L - 1 ancestors that outrank it (cumulative log-probabilities only fall along a path;
    the stable selection breaks ties for the ancestor), so with ``total_token - 1`` draft nodes no node below
    level ``total_token - 1`` is ever kept. The cap leaves the selected tree exactly as it was and saves the
    forwards that drafted those levels (a 4-node tree drafts 3 levels, not 6). ``free_last_level``: the tree
    ends one level below ``depth`` without a forward of its own (CEPD's contrastive level); otherwise that
    level costs a forward like the others."""
    if total_token < 2:
        return depth
    deepest = total_token - 1
    return max(1, min(depth, deepest if free_last_level else deepest - 1))


class TreeDrafter(Drafter):
    """Drafter for Jakiro (2 experts, CEPD) and the EAGLE-2 baseline head (1 expert, no CEPD)."""

    def __init__(self, model: JakiroDraftModel, total_token: int = 60, depth: int = 5, top_k: int = 10,
                 cepd: bool | None = None, legacy_cepd_alignment: bool = False,
                 draft_dtype: str | torch.dtype | None = None):
        """``draft_dtype``: the dtype of the weights the head drafts with (None = its own; ``"auto"`` = bf16 on
        CPU where that is cheaper, see `draft_precision`); another dtype drafts with a converted copy."""
        if depth < 1:
            raise ConfigError(f"depth must be >= 1, got {depth}")
        if top_k < 1:
            raise ConfigError(f"top_k (tree) must be >= 1, got {top_k}")
        if total_token < 2 and total_token != -1:
            raise ConfigError(f"total_token must be >= 2 (root included) or -1 for auto, got {total_token}")
        cepd = model.config.contrastive if cepd is None else cepd
        if cepd and not model.config.contrastive:
            raise ConfigError("CEPD needs a head with a contrastive branch: pass cepd=False for this head")
        self.head, self.total_token, self.depth, self.top_k = model, total_token, depth, top_k
        self.cepd, self.legacy_cepd_alignment = cepd, legacy_cepd_alignment
        self.draft_dtype = next(model.parameters()).dtype if draft_dtype is None else resolve_draft_dtype(model,
                                                                                                         draft_dtype)
        self._copy = DraftCopy(model, self.draft_dtype)
        self.model = model
        self.cache: PreallocatedLayer | None = None

    @property
    def width(self) -> int:
        """Nodes expanded per level and children per node: ``top_k``, but never more than the tree's ``total_token - 1``
        draft nodes. A node outranked by that many others of its level (or a child by that many siblings)
        can never be among the best ``total_token - 1`` candidates, so the narrower growth selects the same
        tree while every draft forward runs fewer rows."""
        width = min(self.top_k, self.model.draft_vocab_size)
        return min(width, self.total_token - 1) if self.total_token >= 2 else width

    @property
    def chooses_depth(self) -> bool:
        return True

    @property
    def levels_drafted(self) -> int:
        return levels_within_budget(self.depth, self.total_token, self.cepd)

    @property
    def forwards_per_round(self) -> int:
        return self.levels_drafted if self.cepd else self.levels_drafted + 1

    @property
    def max_path_drafts(self) -> int:
        return min(self.depth + 1, self.total_token - 1)

    def start(self, input_ids: torch.Tensor, features: torch.Tensor, capacity: int) -> None:
        self.model = self._copy.get()  # the head itself, or its copy in draft_dtype (rebuilt if the head changed)
        self.cache = PreallocatedLayer(capacity + self.depth * self.top_k + 1)
        self.stable = 0
        self.pending_tokens, self.pending_features = input_ids[:, 1:], features.to(self._copy.activation_dtype)

    def accept(self, accepted_ids: torch.Tensor, accepted_features: torch.Tensor) -> None:
        self.pending_tokens = accepted_ids[:, 1:]
        self.pending_features = accepted_features.to(self._copy.activation_dtype)

    def _mask(self, rows: int, tree_block: torch.Tensor | None) -> torch.Tensor:
        """Boolean attention mask [1,1,rows,stable+tree]: every verified position plus the tree block."""
        device = self.pending_features.device
        past = torch.ones(rows, self.stable, dtype=torch.bool, device=device)
        return torch.cat((past, tree_block), dim=1)[None, None] if tree_block is not None else past[None, None]

    def _top(self, hidden: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (target ids, log-probs) of the draft distribution for each row of ``hidden``."""
        logp = torch.log_softmax(self.model.logits(hidden).float(), dim=-1)
        values, indices = logp.topk(k, dim=-1)
        return self.model.to_target_ids(indices), values

    @torch.no_grad()
    def propose(self, root_token: int) -> DraftTree:
        model, depth = self.model, self.levels_drafted
        device = self.pending_features.device
        k = self.width
        tokens = torch.cat((self.pending_tokens, torch.tensor([[root_token]], device=device)), dim=1)
        new = tokens.shape[1]
        self.cache.crop(self.stable)
        positions = torch.arange(self.stable, self.stable + new, device=device)[None]
        causal = torch.ones(new, new, dtype=torch.bool, device=device).tril()
        both = self.cepd and depth == 1
        out = model(self.pending_features, tokens, positions, self._mask(new, causal), self.cache,
                    branches="both" if both else "mix", last_only=True)
        mix, contrastive = out if both else (out, None)
        self.stable += new

        pool = CandidatePool(root_token, device)
        ids, scores = self._top(mix[0, -1:], k)
        nodes = pool.add(ids[0], scores[0], torch.full((k,), -1, device=device))
        hidden, frontier_tokens, frontier_scores = mix[0, -1:].expand(k, -1), ids[0], scores[0]
        contrastive_rows = contrastive[0, -1:] if both else None
        contrastive_parent = torch.zeros(k, dtype=torch.long, device=device)
        tree_block = torch.eye(k, dtype=torch.bool, device=device)

        for level in range(2, depth + 2):
            if self.cepd and level == depth + 1:
                rows = (torch.arange(k, device=device) if self.legacy_cepd_alignment and len(contrastive_rows) == k
                        else contrastive_parent)
                child_ids, child_logp = self._top(contrastive_rows[rows], k)
                pool.add(child_ids, frontier_scores[:, None] + child_logp, nodes[:, None].expand(k, k))
                break
            produce_both = self.cepd and level == depth
            position = torch.full((1, k), self.stable + level - 2, device=device)
            out = model(hidden[None], frontier_tokens[None], position, self._mask(k, tree_block), self.cache,
                        branches="both" if produce_both else "mix")
            mix, contrastive = out if produce_both else (out, None)
            child_ids, child_logp = self._top(mix[0], k)
            cumulative = frontier_scores[:, None] + child_logp  # [k parents, k children]
            children = pool.add(child_ids, cumulative, nodes[:, None].expand(k, k)).view(k, k)
            if level == depth + 1:
                break
            frontier_scores, best = cumulative.flatten().topk(k)
            parent_row = best // k
            nodes, hidden = children.flatten()[best], mix[0, parent_row]
            frontier_tokens = child_ids.flatten()[best]
            tree_block = torch.cat((tree_block[parent_row], torch.eye(k, dtype=torch.bool, device=device)), dim=1)
            if produce_both:
                contrastive_rows, contrastive_parent = contrastive[0], parent_row
        return pool.select(self.total_token - 1)


def make_tree_drafter(ea_model) -> TreeDrafter:
    """The registry's drafter for Jakiro and EAGLE-2 heads (options: ``cepd``, ``legacy_cepd_alignment``,
    ``draft_dtype`` (default ``"auto"``: bf16 weights on CPU where that is cheaper))."""
    options = dict(ea_model.drafter_options)
    unknown = set(options) - {"cepd", "legacy_cepd_alignment", "draft_dtype"}
    if unknown:
        method = ea_model.ea_layer.config.method
        raise ConfigError(f"unknown option(s) {sorted(unknown)} for a {method} head: "
                          "it takes cepd, legacy_cepd_alignment and draft_dtype")
    return TreeDrafter(ea_model.ea_layer, ea_model.total_token, ea_model.depth, ea_model.top_k,
                       options.get("cepd"), bool(options.get("legacy_cepd_alignment", False)),
                       options.get("draft_dtype", "auto"))
