"""Jakiro* drafting: a node's children are the best candidates of each expert, merged without duplicates.

At every tree node the head yields one next feature per expert (`JakiroStarHead.expert_step`). Each
expert ranks its own draft vocabulary; the children are taken in rank-major order, dominant expert
(largest gate logit) first — expert A's best, expert B's best, A's second, B's second, ... — skipping
tokens already taken, until the node has as many children as the tree asks for. Each child then
continues from the feature of the expert that proposed it. The candidates are a deterministic
function of the context (no sampling), so the core's recursive rejection verifier (q(x) = 1) keeps
the output exactly the base model's at every temperature.

Two tree shapes:
* ``tree="static"`` (default): an EAGLE-1 static tree (`jakiro.model.static_tree`; the original's
  26-node layout unless ``tree_choices`` is given), cut to the first ``total_token - 1`` nodes;
* ``tree="dynamic"``: EAGLE-2's dynamic growth (expand the ``top_k`` best nodes per level, keep the
  ``total_token - 1`` best of the pool), a child's score being its parent's plus the log-probability
  its own expert gave it — the like-for-like comparison with Jakiro and EAGLE-2.

The draft KV cache is handled as in `TreeDrafter`: a stable prefix of real positions, tree entries
appended behind it each round and cropped away at the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from jakiro.errors import ConfigError
from jakiro.model.draft_precision import DraftCopy, resolve_draft_dtype
from jakiro.model.drafter import Drafter
from jakiro.model.kv_cache import PreallocatedLayer
from jakiro.model.static_tree import StaticTree, named_tree
from jakiro.model.tree import CandidatePool, DraftTree
from jakiro.model.tree_drafter import levels_within_budget

from .head import JakiroStarHead

TREES = ("static", "dynamic")


def merge_expert_candidates(logp: torch.Tensor, order: torch.Tensor, width: int
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``width`` distinct tokens of the experts' rankings, interleaved rank-major.

    ``logp`` [E, R, V]: each expert's log-probabilities for R nodes; ``order`` [R, E]: the experts of each
    node in turn order (dominant first). Returns draft-vocabulary ids, their log-probability under the
    proposing expert, and that expert's index, each [R, width]. The dominant expert's own ``width`` best
    are distinct, so ``width`` distinct tokens always exist.
    """
    experts, rows, _ = logp.shape
    values, ids = logp.topk(width, dim=-1)  # [E, R, w]
    turn = order[:, :, None].expand(rows, experts, width)
    values = values.permute(1, 0, 2).gather(1, turn).transpose(1, 2).reshape(rows, width * experts)
    ids = ids.permute(1, 0, 2).gather(1, turn).transpose(1, 2).reshape(rows, width * experts)
    owner = order[:, None, :].expand(rows, width, experts).reshape(rows, width * experts)
    earlier = torch.ones(width * experts, width * experts, dtype=torch.bool, device=logp.device).tril(-1)
    duplicate = ((ids[:, :, None] == ids[:, None, :]) & earlier).any(-1)
    keep = torch.sort(duplicate.to(torch.uint8), dim=1, stable=True).indices[:, :width]
    return ids.gather(1, keep), values.gather(1, keep), owner.gather(1, keep)


@dataclass
class DecouplingStats:
    """How often the drafted trees really mix experts (for the closing note of issue 10).

    A *level* is one depth of a proposed tree with at least two nodes; it is *mixed* when its nodes were
    proposed by at least two experts. A *sibling group* is the children of one node (two or more)."""

    rounds: int = 0
    levels: int = 0
    mixed_levels: int = 0
    sibling_groups: int = 0
    mixed_sibling_groups: int = 0
    nodes_per_expert: list[int] = field(default_factory=list)

    def record(self, tree: DraftTree, experts: list[int]) -> None:
        """``experts[i]``: proposer of tree node i (-1 for the root)."""
        self.rounds += 1
        depths, parents = tree.depths.tolist(), tree.parents.tolist()
        by_level: dict[int, set[int]] = {}
        by_parent: dict[int, list[int]] = {}
        counts: dict[int, int] = {}
        for node in range(1, len(experts)):
            by_level.setdefault(depths[node], set()).add(experts[node])
            by_parent.setdefault(parents[node], []).append(experts[node])
            counts[depths[node]] = counts.get(depths[node], 0) + 1
        for level, members in by_level.items():
            if counts[level] >= 2:
                self.levels += 1
                self.mixed_levels += len(members) >= 2
        for children in by_parent.values():
            if len(children) >= 2:
                self.sibling_groups += 1
                self.mixed_sibling_groups += len(set(children)) >= 2
        for expert in experts[1:]:
            while len(self.nodes_per_expert) <= expert:
                self.nodes_per_expert.append(0)
            self.nodes_per_expert[expert] += 1

    @property
    def mixed_level_share(self) -> float:
        return self.mixed_levels / self.levels if self.levels else 0.0

    @property
    def mixed_sibling_share(self) -> float:
        return self.mixed_sibling_groups / self.sibling_groups if self.sibling_groups else 0.0

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "levels": self.levels, "mixed_levels": self.mixed_levels,
                "mixed_level_share": self.mixed_level_share, "sibling_groups": self.sibling_groups,
                "mixed_sibling_groups": self.mixed_sibling_groups, "mixed_sibling_share": self.mixed_sibling_share,
                "nodes_per_expert": list(self.nodes_per_expert)}


@dataclass
class _StaticLevel:
    """Precomputed indices for growing one depth of a static tree."""

    width: int                  # ranked candidates per parent row
    children: torch.Tensor      # node ids of this depth's nodes
    child_row: torch.Tensor     # row (index among the parents) of each child's parent
    child_rank: torch.Tensor    # each child's rank at its parent
    forward_rows: torch.Tensor  # positions in ``children`` of the nodes expanded next (the next draft inputs)
    mask: torch.Tensor | None   # [rows, cached tree entries] ancestor block of that forward


class JakiroStarDrafter(Drafter):
    """Drafter for Jakiro* heads: decoupled expert candidates on a static (default) or dynamic tree."""

    def __init__(self, model: JakiroStarHead, total_token: int = 60, depth: int = 5, top_k: int = 10,
                 tree: str = "static", tree_choices: str | Sequence[Sequence[int]] | None = None,
                 draft_dtype: str | torch.dtype | None = None):
        """``draft_dtype``: the dtype of the weights the head drafts with (None = its own; ``"auto"`` = bf16 on
        CPU where that is cheaper), as for Jakiro's drafter (`jakiro.model.draft_precision`)."""
        if tree not in TREES:
            raise ConfigError(f"unknown tree {tree!r} for a Jakiro* head: use 'static' or 'dynamic'")
        if total_token < 2 and total_token != -1:
            raise ConfigError(f"total_token must be >= 2 (root included) or -1 for auto, got {total_token}")
        if tree == "dynamic":
            if tree_choices is not None:
                raise ConfigError("tree_choices shape a static tree: drop them or pass tree='static'")
            if depth < 1:
                raise ConfigError(f"depth must be >= 1, got {depth}")
            if top_k < 1:
                raise ConfigError(f"top_k (tree) must be >= 1, got {top_k}")
        self.head, self.total_token, self.depth, self.top_k, self.tree = model, total_token, depth, top_k, tree
        self.draft_dtype = next(model.parameters()).dtype if draft_dtype is None else resolve_draft_dtype(model,
                                                                                                         draft_dtype)
        self._copy = DraftCopy(model, self.draft_dtype)
        self.model = model
        self.shape: StaticTree | None = None
        if tree == "static":
            shape = named_tree("jakiro_star" if tree_choices is None else tree_choices)
            self.shape = shape if total_token == -1 else shape.truncated(total_token - 1)
            self._levels = self._plan(self.shape)
            self._width_needed = max(level.width for level in self._levels)
            if self._width_needed > model.draft_vocab_size:
                raise ConfigError(f"the static tree needs {self._width_needed} candidates per node but the head's "
                                  f"draft vocabulary has {model.draft_vocab_size} tokens")
        self.cache: PreallocatedLayer | None = None
        self.decoupling = DecouplingStats()

    # -- static plan -----------------------------------------------------------------------------
    @staticmethod
    def _plan(shape: StaticTree) -> list[_StaticLevel]:
        ancestors = shape.ancestor_mask()
        levels, cached = [], []
        for depth in range(shape.max_depth):
            parents = shape.expanded(depth)
            children = [c for p in parents for c in shape.children(p)]
            # rows of the forward at this depth are the expanded nodes in node order (paths sort that way)
            assert not cached or cached[-len(parents):] == parents
            following = set(shape.expanded(depth + 1))
            forward_rows = [i for i, c in enumerate(children) if c in following]
            cached += [children[i] for i in forward_rows]
            forward_nodes = [children[i] for i in forward_rows]
            mask = ancestors[forward_nodes][:, cached] if forward_rows else None
            levels.append(_StaticLevel(
                width=max(shape.width(p) for p in parents),
                children=torch.tensor(children),
                child_row=torch.tensor([parents.index(shape.parents[c]) for c in children]),
                child_rank=torch.tensor([shape.ranks[c] for c in children]),
                forward_rows=torch.tensor(forward_rows, dtype=torch.long),
                mask=mask))
        return levels

    # -- Drafter interface ------------------------------------------------------------------------
    @property
    def chooses_depth(self) -> bool:
        return self.shape is None

    @property
    def levels_drafted(self) -> int:
        """Dynamic tree: ``depth``, capped where no deeper node could be selected (`levels_within_budget`)."""
        return levels_within_budget(self.depth, self.total_token, free_last_level=False)

    @property
    def forwards_per_round(self) -> int:
        if self.shape is not None:
            return 1 + sum(len(level.forward_rows) > 0 for level in self._levels)
        return self.levels_drafted + 1

    @property
    def max_path_drafts(self) -> int:
        if self.shape is not None:
            return self.shape.max_depth
        return min(self.depth + 1, self.total_token - 1)

    @property
    def max_tree_tokens(self) -> int | None:
        """A static tree may be smaller than ``total_token``; the KV cache reserves only its own size."""
        return len(self.shape) if self.shape is not None else None

    def settings(self) -> dict:
        """Recorded with results (and compared when an answer file is resumed)."""
        if self.shape is None:
            return {"tree": "dynamic"}
        return {"tree": "static", "static_tree_nodes": len(self.shape), "static_tree_depth": self.shape.max_depth}

    def statistics(self) -> dict:
        """How much the drafted trees mixed experts since the last `reset_statistics`."""
        return {"decoupling": self.decoupling.as_dict()}

    def reset_statistics(self) -> None:
        self.decoupling = DecouplingStats()

    @property
    def tree_entries(self) -> int:
        """Draft-cache entries one proposal appends behind the stable prefix."""
        if self.shape is not None:
            return sum(len(level.forward_rows) for level in self._levels)
        return self.depth * self.top_k

    def start(self, input_ids: torch.Tensor, features: torch.Tensor, capacity: int) -> None:
        self.model = self._copy.get()  # the head itself, or its copy in draft_dtype (rebuilt if the head changed)
        self.cache = PreallocatedLayer(capacity + self.tree_entries + 1)
        self.stable = 0
        self.pending_tokens, self.pending_features = input_ids[:, 1:], features.to(self._copy.activation_dtype)

    def accept(self, accepted_ids: torch.Tensor, accepted_features: torch.Tensor) -> None:
        self.pending_tokens = accepted_ids[:, 1:]
        self.pending_features = accepted_features.to(self._copy.activation_dtype)

    def _mask(self, rows: int, tree_block: torch.Tensor) -> torch.Tensor:
        """Boolean attention mask [1,1,rows,stable+tree]: every verified position plus the tree block."""
        past = torch.ones(rows, self.stable, dtype=torch.bool, device=tree_block.device)
        return torch.cat((past, tree_block.to(past.device)), dim=1)[None, None]

    def _candidates(self, features: torch.Tensor, gate_logits: torch.Tensor, width: int):
        """Merged children of R nodes from their expert features [E, R, H] and gate logits [R, E]:
        target ids, log-probs under the proposing expert, and the proposing expert, each [R, width]."""
        logp = torch.log_softmax(self.model.logits(features).float(), dim=-1)
        order = gate_logits.float().argsort(dim=-1, descending=True, stable=True)
        ids, scores, owner = merge_expert_candidates(logp, order, width)
        return self.model.to_target_ids(ids), scores, owner

    @torch.no_grad()
    def propose(self, root_token: int) -> DraftTree:
        device = self.pending_features.device
        tokens = torch.cat((self.pending_tokens, torch.tensor([[root_token]], device=device)), dim=1)
        new = tokens.shape[1]
        self.cache.crop(self.stable)
        positions = torch.arange(self.stable, self.stable + new, device=device)[None]
        causal = torch.ones(new, new, dtype=torch.bool, device=device).tril()
        step = self.model.expert_step(self.pending_features, tokens, positions, self._mask(new, causal), self.cache,
                                      last_only=True)
        self.stable += new
        features, gate = step.features[:, 0], step.gate_logits[0]  # [E, 1, H], [1, E]
        if self.shape is not None:
            tree, experts = self._grow_static(root_token, features, gate)
        else:
            tree, experts = self._grow_dynamic(root_token, features, gate)
        self.decoupling.record(tree, experts.tolist())
        return tree

    def _grow_static(self, root_token: int, features: torch.Tensor, gate: torch.Tensor):
        device = features.device
        size = len(self.shape)
        node_tokens = torch.full((size,), root_token, dtype=torch.long, device=device)
        node_experts = torch.full((size,), -1, dtype=torch.long, device=device)
        for depth, level in enumerate(self._levels):
            ids, _, owner = self._candidates(features, gate, level.width)
            row, rank = level.child_row.to(device), level.child_rank.to(device)
            children = level.children.to(device)
            node_tokens[children] = ids[row, rank]
            node_experts[children] = owner[row, rank]
            if level.mask is None:
                break
            pick = level.forward_rows.to(device)
            inputs = features[owner[row, rank][pick], row[pick]]  # each child continues from its expert's feature
            rows = len(pick)
            position = torch.full((1, rows), self.stable + depth, device=device)
            step = self.model.expert_step(inputs[None], node_tokens[children][pick][None], position,
                                          self._mask(rows, level.mask), self.cache)
            features, gate = step.features[:, 0], step.gate_logits[0]
        return self.shape.draft_tree(node_tokens), node_experts

    def _grow_dynamic(self, root_token: int, features: torch.Tensor, gate: torch.Tensor):
        device = features.device
        k = min(self.top_k, self.model.draft_vocab_size)
        pool = CandidatePool(root_token, device)
        ids, scores, owner = self._candidates(features, gate, k)
        nodes = pool.add(ids[0], scores[0], torch.full((k,), -1, device=device))
        proposers = [owner[0]]
        hidden = features[owner[0], 0]  # [k, H]: each level-1 node continues from its expert's feature
        frontier_tokens, frontier_scores = ids[0], scores[0]
        tree_block = torch.eye(k, dtype=torch.bool, device=device)
        depth = self.levels_drafted
        for level in range(2, depth + 2):
            position = torch.full((1, k), self.stable + level - 2, device=device)
            step = self.model.expert_step(hidden[None], frontier_tokens[None], position, self._mask(k, tree_block),
                                          self.cache)
            features, gate = step.features[:, 0], step.gate_logits[0]  # [E, k, H], [k, E]
            child_ids, child_logp, child_owner = self._candidates(features, gate, k)
            cumulative = frontier_scores[:, None] + child_logp  # [k parents, k children]
            children = pool.add(child_ids, cumulative, nodes[:, None].expand(k, k)).view(k, k)
            proposers.append(child_owner.flatten())
            if level == depth + 1:
                break
            frontier_scores, best = cumulative.flatten().topk(k)
            parent_row = best // k
            nodes = children.flatten()[best]
            hidden = features[child_owner.flatten()[best], parent_row]
            frontier_tokens = child_ids.flatten()[best]
            tree_block = torch.cat((tree_block[parent_row], torch.eye(k, dtype=torch.bool, device=device)), dim=1)
        tree = pool.select(self.total_token - 1)
        experts = torch.cat((torch.tensor([-1], device=device), torch.cat(proposers)[pool.chosen]))
        return tree, experts


def make_star_drafter(ea_model) -> JakiroStarDrafter:
    """The registry's drafter for Jakiro* heads (options: ``tree`` = static|dynamic, ``tree_choices``,
    ``draft_dtype`` (default ``"auto"``: bf16 weights on CPU where that is cheaper))."""
    options = dict(ea_model.drafter_options)
    tree = options.pop("tree", "static")
    choices = options.pop("tree_choices", None)
    draft_dtype = options.pop("draft_dtype", "auto")
    if options:
        raise ConfigError(f"unknown option(s) {sorted(options)} for a jakiro_star head: it takes tree "
                          "('static' or 'dynamic'), tree_choices and draft_dtype")
    return JakiroStarDrafter(ea_model.ea_layer, ea_model.total_token, ea_model.depth, ea_model.top_k, tree, choices,
                             draft_dtype)
