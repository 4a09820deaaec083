"""Choose the tree budget (``total_token=-1``) from the loaded head's acceptance and this device's costs.

A tree of N nodes yields τ(N) tokens per round and costs ``draft + verify(N) + bookkeeping`` plain
decoding steps, so the budget maximising ``τ(N) / round_cost(N)`` is the fastest one. Both sides are
measured for what is actually loaded:

* τ(N): the head's own curve where its folder has one (``config.json``'s ``extra.tau_by_tree_size``, or
  the "τ by tree size" table of its model card, written from held-out prompts at training time),
  else a quick calibration: a few greedy rounds on built-in prompts with the largest candidate tree,
  where each round also tells what every smaller budget would have accepted (a smaller budget's tree
  is the best-scored subset of the larger one, and the target's greedy token at each node does not
  depend on which other nodes were drafted). Where neither is possible, EAGLE's hand-set prior
  ``N ** 0.3`` stands in.
* cost(N): the forward cost table (`jakiro.model.cost`) of this device, with the fast verification
  forward when it is on, plus the drafting and bookkeeping cost per round seen in the calibration run.

Where the drafter has a depth, the depth is chosen with the budget: ``depth`` is the deepest tree
considered, and the calibration runs once per candidate depth (1, 2, 3 and ``depth``), because a
shallower tree drafts with fewer head forwards and, with Jakiro's CEPD, ends in a different last level.
The pair (budget, depth) with the most tokens per plain step wins; a model card's τ curve (measured at
the card's depth) is scaled per depth by the calibration's ratios.

Both measurements are kept on disk (`jakiro.model.budget_cache`), so a later start with the same model,
head and machine reads them back in a moment; ``JAKIRO_BUDGET_CACHE=0`` measures every time.
"""

from __future__ import annotations

import json
import math
import re
import sys
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import budget_cache
from .cost import DEFAULT_PREFIX, CostTable, measure_forward_costs

if TYPE_CHECKING:
    from .ea_model import EaModel

CANDIDATE_BUDGETS = (4, 8, 12, 16, 24, 32, 48, 60)
CALIBRATION_PROMPTS = (
    "Explain in three short paragraphs why the sky is blue.",
    "Write a short story about a robot who learns to paint.",
    "What are three good habits for staying healthy? Answer briefly.",
)
CALIBRATION_NEW_TOKENS = 32
SHALLOW_DEPTHS = (1, 2, 3)  # tried besides the requested depth (never deeper than it)
PRIOR_EXPONENT = 0.3  # EAGLE's hand-set factors 1, 1.05, 1.07, 1.1, 1.13 for 40..60 nodes follow N ** 0.3

_COSTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


@dataclass
class BudgetChoice:
    """The chosen budget and everything it was chosen from (recorded with benchmark results)."""

    total_token: int
    tau_source: str
    tau: dict[int, float]
    round_steps: dict[int, float]
    score: dict[int, float]
    draft_steps: float = 0.0
    bookkeeping_steps: float = 0.0
    fast_verify: bool = False
    step_ms: float = 0.0
    verify_ms: dict[int, float] = field(default_factory=dict)
    depth: int | None = None  # the chosen depth (None: the drafter has none to choose)
    score_by_depth: dict[int, dict[int, float]] = field(default_factory=dict)  # τ / round cost, depth -> budget

    @property
    def timings(self) -> dict[int, float]:
        """Seconds of one verification forward per candidate (the older record of the auto budget)."""
        return {n: ms / 1000 for n, ms in self.verify_ms.items()}

    def as_dict(self) -> dict:
        def keys_as_text(value):
            return {str(n): keys_as_text(v) for n, v in value.items()} if isinstance(value, dict) else value

        return {k: keys_as_text(value) for k, value in asdict(self).items()}


# -- τ by tree size ------------------------------------------------------------------------------
def interpolate_tau(curve: dict[int, float], size: int) -> float:
    """τ at ``size`` from a measured curve: linear in log N between measured sizes, flat beyond them."""
    sizes = sorted(curve)
    if size <= sizes[0]:
        return curve[sizes[0]]
    if size >= sizes[-1]:
        return curve[sizes[-1]]
    upper = next(i for i, s in enumerate(sizes) if s >= size)
    lo, hi = sizes[upper - 1], sizes[upper]
    w = (math.log(size) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return curve[lo] + w * (curve[hi] - curve[lo])


def _clean_curve(raw) -> dict[int, float] | None:
    try:
        curve = {int(k): float(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        return None
    curve = {k: v for k, v in curve.items() if k >= 2 and v >= 1.0}
    return curve or None


def head_tau_curve(folder: str | Path | None) -> tuple[dict[int, float], str] | None:
    """The head's measured τ by tree size: ``config.json`` ``extra.tau_by_tree_size``, else its model card's table."""
    if folder is None:
        return None
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            extra = json.loads(config.read_text()).get("extra") or {}
        except (OSError, ValueError):
            extra = {}
        curve = _clean_curve(extra.get("tau_by_tree_size") or {})
        if curve:
            return curve, "head config (tau_by_tree_size)"
    card = folder / "README.md"
    if card.is_file():
        curve = parse_card_tau(card.read_text(errors="replace"))
        if curve:
            return curve, "head model card (τ by tree size)"
    return None


def parse_card_tau(text: str) -> dict[int, float] | None:
    """The ``| tree nodes | 4 | 8 | ...`` / ``| τ | 1.5 | ...`` table of a model card (`jakiro.train.model_card`)."""
    sizes = values = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        if re.fullmatch(r"tree (nodes|size)", cells[0], flags=re.I):
            sizes = cells[1:]
        elif sizes is not None and cells[0] in ("τ", "tau"):
            values = cells[1:]
            break
    if not sizes or not values or len(sizes) != len(values):
        return None
    return _clean_curve(dict(zip(sizes, values)))


def prior_tau(size: int) -> float:
    return size ** PRIOR_EXPONENT


# -- calibration ---------------------------------------------------------------------------------
def counterfactual_accepts(tree, logits, budgets) -> dict[int, int]:
    """Draft tokens a greedy round would accept with each budget, from the target's logits at the tree's nodes.

    Only nodes on some budget's accepted path are read (``logits`` may compute rows lazily)."""
    tokens, greedy = tree.tokens.tolist(), {}

    def best(node: int) -> int:
        if node not in greedy:
            greedy[node] = int(logits[node].argmax())
        return greedy[node]

    result = {}
    for budget in budgets:
        allowed = set(tree.budget_subset(budget).tolist())
        node, accepted = 0, 0
        while True:
            nxt = next((c for c in tree.children(node) if c in allowed and tokens[c] == best(node)), None)
            if nxt is None:
                break
            node, accepted = nxt, accepted + 1
        result[budget] = accepted
    return result


@torch.no_grad()
def calibrate(ea: "EaModel", budgets, prompts=CALIBRATION_PROMPTS, max_new_tokens: int = CALIBRATION_NEW_TOKENS,
              depth: int | None = None) -> dict | None:
    """Greedy rounds with the largest budget on built-in prompts: τ for every budget, draft/bookkeeping seconds
    (and ``forwards``, the head forwards of one round). ``depth``: the drafter's depth for this run (None: its own).

    None where it cannot run: no tokenizer to encode the prompts, or a drafter whose trees are not ranked."""
    from ..chat import prompt_ids
    from .drafter import Drafter
    from .generation import GenerationStats, plan_capacity, speculative_stream
    from .sampling import SamplingConfig, TokenSampler

    if ea.tokenizer is None:
        return None
    inner, target, largest = ea.drafter, ea._target, max(budgets)
    accepts: dict[int, list[int]] = {b: [] for b in budgets}
    totals = {"draft": 0.0, "bookkeeping": 0.0, "rounds": 0}

    class Recorder(Drafter):
        def start(self, input_ids, features, capacity):
            inner.start(input_ids, features, capacity)

        def propose(self, root_token):
            return inner.propose(root_token)

        def accept(self, accepted_ids, accepted_features):
            inner.accept(accepted_ids, accepted_features)

        def prefill(self, target_, input_ids):
            return inner.prefill(target_, input_ids)

        def verify_forward(self, target_, tree):
            logits, hidden = inner.verify_forward(target_, tree)
            if tree.scores is None:
                raise _Unranked
            for budget, accepted in counterfactual_accepts(tree, logits, budgets).items():
                accepts[budget].append(accepted)
            return logits, hidden

    saved_total, saved_fast, saved_depth = getattr(inner, "total_token", None), target.fast, getattr(inner, "depth", None)
    if saved_total is None:
        return None
    inner.total_token, target.fast = largest, None
    if depth is not None and saved_depth is not None:
        inner.depth = depth
    forwards = inner.forwards_per_round
    try:
        for text in prompts:
            ids = torch.tensor([prompt_ids(ea.tokenizer, [{"role": "user", "content": text}])])
            capacity = plan_capacity(ids.shape[1], max_new_tokens, largest, ea.context_length)
            stats = GenerationStats()
            for _ in speculative_stream(target, Recorder(), ids, TokenSampler(SamplingConfig()), max_new_tokens,
                                        capacity, ea.stop_ids, stats):
                pass
            totals["draft"] += stats.draft_time
            totals["bookkeeping"] += stats.bookkeeping_time
            totals["rounds"] += stats.rounds
    except _Unranked:
        return None
    finally:
        inner.total_token, target.fast = saved_total, saved_fast
        if saved_depth is not None:
            inner.depth = saved_depth
    rounds = max(totals["rounds"], 1)
    return {"tau": {b: 1 + sum(a) / max(len(a), 1) for b, a in accepts.items()},
            "draft_s": totals["draft"] / rounds, "bookkeeping_s": totals["bookkeeping"] / rounds,
            "rounds": totals["rounds"], "forwards": forwards}


class _Unranked(Exception):
    """The drafter's trees carry no scores: smaller budgets cannot be read off a larger tree."""


# -- costs and the choice ------------------------------------------------------------------------
def forward_costs(model, candidates, fast: bool, repeats: int = 3) -> CostTable:
    """The cost table of the candidates (fast or plain forward), measured once per model and kept."""
    key = (tuple(sorted(candidates)), fast, repeats)
    per_model = _COSTS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = measure_forward_costs(model, candidates, repeats=repeats, fast=fast, plain=not fast)
    return per_model[key]


def cached_forward_costs(model, candidates, fast: bool, repeats: int = 3):
    """The `forward_costs` this machine measured before for this model (`jakiro.model.budget_cache`):
    ``(table or None, measured_at or None, key)``; the caller measures on a miss and stores under ``key``."""
    key = budget_cache.cost_key(model, candidates, fast, repeats, DEFAULT_PREFIX)
    hit = budget_cache.load(key)
    return (hit[0], hit[1], key) if hit is not None else (None, None, key)


def candidate_depths(ea: "EaModel") -> tuple[int, ...]:
    """The depths the chooser tries: 1, 2, 3 and the requested one, never deeper than it; just the requested
    depth where the drafter has none (its trees are not grown level by level)."""
    if not getattr(ea.drafter, "chooses_depth", False):
        return (ea.depth,)
    return tuple(sorted({d for d in SHALLOW_DEPTHS + (ea.depth,) if d <= ea.depth}))


def _forwards(drafter, total_token: int, depth: int | None) -> int:
    """Head forwards of one round of ``drafter`` at this budget and depth (levels the budget cannot reach are not drafted)."""
    saved = drafter.total_token, getattr(drafter, "depth", None)
    drafter.total_token = total_token
    if depth is not None and saved[1] is not None:
        drafter.depth = depth
    try:
        return max(int(drafter.forwards_per_round), 1)
    finally:
        drafter.total_token = saved[0]
        if saved[1] is not None:
            drafter.depth = saved[1]


def _load_calibrations(ea, candidates, depths, wanted: bool) -> tuple[dict, dict, dict]:
    """Calibrations from the disk cache: (results by depth, their dates, their cache keys)."""
    results, dates, keys = {}, {}, {}
    if not wanted:
        return results, dates, keys
    for depth in depths:
        keys[depth] = budget_cache.calibration_key(ea, candidates, CALIBRATION_PROMPTS, CALIBRATION_NEW_TOKENS,
                                                   depth=depth)
        hit = budget_cache.load(keys[depth])
        if hit is not None:
            results[depth], dates[depth] = hit
    return results, dates, keys


def choose_budget(ea: "EaModel", candidates=CANDIDATE_BUDGETS, tau_curve: tuple[dict[int, float], str] | None = None,
                  calibrate_with_prompts: bool = True) -> BudgetChoice:
    """Pick the budget of ``candidates`` (and the depth, up to ``ea.depth``) maximising τ / round cost for this
    head on this device.

    The cost table and the calibrations come from the on-disk cache when this model, head and machine
    measured them before (`jakiro.model.budget_cache`; ``JAKIRO_BUDGET_CACHE=0`` measures anew)."""
    candidates = tuple(sorted(set(int(c) for c in candidates)))
    depths = candidate_depths(ea) if calibrate_with_prompts else (ea.depth,)
    fast = ea._target.fast is not None or bool(getattr(ea, "fast_verify", False))
    table, table_date, table_key = cached_forward_costs(ea.base_model, candidates, fast)
    calibrations, calibration_dates, calibration_keys = _load_calibrations(ea, candidates, depths,
                                                                           calibrate_with_prompts)
    missing = [d for d in depths if d not in calibration_dates] if calibrate_with_prompts else []
    if table is None or missing:
        work = ([f"timing {len(candidates)} tree sizes on this device"] if table is None else [])
        if missing:
            what = "calibrating the head's acceptance" if tau_curve is None else "timing the head's drafting"
            at = f" at depth {', '.join(map(str, missing))}" if len(depths) > 1 else ""
            work.append(what + at)
        done = ([f"forward costs from the cache (measured {budget_cache.when(table_date)})"]
                if table is not None else [])
        where = budget_cache.cache_dir()
        kept = (f" (kept in {where} for the next start)"
                if where is not None and (table is None or any(calibration_keys.get(d) for d in missing)) else "")
        print("jakiro: choosing the tree budget (total_token=-1): " + "; ".join(done + [" and ".join(work)])
              + kept, file=sys.stderr, flush=True)
    if table is None:
        table = forward_costs(ea.base_model, candidates, fast)
        budget_cache.store(table_key, table)
    for depth in missing:
        calibrations[depth] = calibrate(ea, candidates, depth=depth)
        budget_cache.store(calibration_keys.get(depth), calibrations[depth])
    step = table.step_ms
    own = calibrations.get(ea.depth)
    if tau_curve is not None:
        curve, source = tau_curve
        card = {n: interpolate_tau(curve, n) for n in candidates}
        tau_by_depth = {ea.depth: card}
        for depth, result in calibrations.items():  # other depths: the card scaled by the calibration's ratio
            if depth != ea.depth and result is not None and own is not None:
                tau_by_depth[depth] = {n: max(1.0, card[n] * result["tau"][n] / own["tau"][n]) for n in candidates}
        if len(tau_by_depth) > 1:
            source += " (other depths scaled by the calibration)"
    elif own is not None:
        tau_by_depth = {d: r["tau"] for d, r in calibrations.items() if r is not None}
        source = f"calibration ({own['rounds']} greedy rounds on built-in prompts)"
    else:
        tau_by_depth = {ea.depth: {n: prior_tau(n) for n in candidates}}
        source = f"prior N ** {PRIOR_EXPONENT} (no measured curve)"
    drafter = ea.drafter
    has_depth = bool(getattr(drafter, "chooses_depth", False))

    def draft_steps(n: int, depth: int) -> float:
        result = calibrations.get(depth)
        if not result:
            return 0.0
        per_round = 1000 * result["draft_s"] / step
        if not has_depth or "forwards" not in result:
            return per_round
        return per_round / max(result["forwards"], 1) * _forwards(drafter, n, depth)

    bookkeeping_by_depth = {d: 1000 * calibrations[d]["bookkeeping_s"] / step if calibrations.get(d) else 0.0
                            for d in tau_by_depth}
    rounds_by_depth, score_by_depth = {}, {}
    for depth, tau in tau_by_depth.items():
        rounds_by_depth[depth] = {n: draft_steps(n, depth) + bookkeeping_by_depth[depth]
                                  + table.round_cost(n, tau[n], fast=fast) for n in candidates}
        score_by_depth[depth] = {n: tau[n] / rounds_by_depth[depth][n] for n in candidates}
    best_depth, best = max(((d, n) for d in score_by_depth for n in candidates),
                           key=lambda dn: (score_by_depth[dn[0]][dn[1]], -dn[1], dn[0]))
    verify_ms = {e.rows: (e.fast_ms if fast and e.fast_ms is not None else e.verify_ms) for e in table.entries}
    draft, bookkeeping = draft_steps(best, best_depth), bookkeeping_by_depth[best_depth]
    if table_date is not None and not missing:
        oldest = min([table_date] + [d for d in calibration_dates.values() if d is not None])
        depth_note = f", depth={best_depth}" if has_depth and len(depths) > 1 else ""
        print(f"jakiro: tree budget from the cache (measured {budget_cache.when(oldest)}): total_token={best}"
              f"{depth_note}; {budget_cache.ENV}=0 measures it again", file=sys.stderr, flush=True)
    if score_by_depth[best_depth][best] < 1.0:
        print(f"jakiro: note: on this device even the best tree ({best} nodes) is predicted at "
              f"{score_by_depth[best_depth][best]:.2f}x plain decoding (τ {tau_by_depth[best_depth][best]:.2f} per round "
              f"of {rounds_by_depth[best_depth][best]:.2f} plain steps, {torch.get_num_threads()} thread(s)); "
              "a better-trained head or another thread count (OMP_NUM_THREADS) may pay off",
              file=sys.stderr, flush=True)
    return BudgetChoice(best, source, tau_by_depth[best_depth], rounds_by_depth[best_depth], score_by_depth[best_depth],
                        draft, bookkeeping, fast, step, verify_ms, best_depth if has_depth else None,
                        score_by_depth if len(score_by_depth) > 1 else {})


def choose_total_token(model, candidates: tuple[int, ...] = CANDIDATE_BUDGETS,
                       fast: bool | None = None) -> tuple[int, dict[int, float]]:
    """The budget for a base model alone (no head at hand): the prior τ curve against this device's
    costs. Returns the budget and the seconds of one verification forward per candidate."""
    from .fast_verify import fast_verify_supported

    fast = fast_verify_supported(model) if fast is None else fast
    table, _, key = cached_forward_costs(model, candidates, fast)
    if table is None:
        table = forward_costs(model, candidates, fast)
        budget_cache.store(key, table)
    rounds = {n: table.round_cost(n, prior_tau(n), fast=fast) for n in candidates}
    best = max(candidates, key=lambda n: (prior_tau(n) / rounds[n], -n))
    return best, {e.rows: (e.fast_ms if fast and e.fast_ms is not None else e.verify_ms) / 1000
                  for e in table.entries}
