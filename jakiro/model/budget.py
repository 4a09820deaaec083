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

    @property
    def timings(self) -> dict[int, float]:
        """Seconds of one verification forward per candidate (the older record of the auto budget)."""
        return {n: ms / 1000 for n, ms in self.verify_ms.items()}

    def as_dict(self) -> dict:
        return {k: ({str(n): v for n, v in value.items()} if isinstance(value, dict) else value)
                for k, value in asdict(self).items()}


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
def calibrate(ea: "EaModel", budgets, prompts=CALIBRATION_PROMPTS, max_new_tokens: int = CALIBRATION_NEW_TOKENS
              ) -> dict | None:
    """Greedy rounds with the largest budget on built-in prompts: τ for every budget, draft/bookkeeping seconds.

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

    saved_total, saved_fast = getattr(inner, "total_token", None), target.fast
    if saved_total is None:
        return None
    inner.total_token, target.fast = largest, None
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
    rounds = max(totals["rounds"], 1)
    return {"tau": {b: 1 + sum(a) / max(len(a), 1) for b, a in accepts.items()},
            "draft_s": totals["draft"] / rounds, "bookkeeping_s": totals["bookkeeping"] / rounds,
            "rounds": totals["rounds"]}


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


def choose_budget(ea: "EaModel", candidates=CANDIDATE_BUDGETS, tau_curve: tuple[dict[int, float], str] | None = None,
                  calibrate_with_prompts: bool = True) -> BudgetChoice:
    """Pick the budget of ``candidates`` maximising τ(N) / round cost(N) for this head on this device.

    The cost table and the calibration come from the on-disk cache when this model, head and machine
    measured them before (`jakiro.model.budget_cache`; ``JAKIRO_BUDGET_CACHE=0`` measures anew)."""
    candidates = tuple(sorted(set(int(c) for c in candidates)))
    fast = ea._target.fast is not None or bool(getattr(ea, "fast_verify", False))
    table, table_date, table_key = cached_forward_costs(ea.base_model, candidates, fast)
    calibration, calibration_date, calibration_key = None, None, None
    if calibrate_with_prompts:
        calibration_key = budget_cache.calibration_key(ea, candidates, CALIBRATION_PROMPTS, CALIBRATION_NEW_TOKENS)
        hit = budget_cache.load(calibration_key)
        if hit is not None:
            calibration, calibration_date = hit
    calibrating = calibrate_with_prompts and calibration_date is None
    if table is None or calibrating:
        work = ([f"timing {len(candidates)} tree sizes on this device"] if table is None else [])
        if calibrating:
            work.append("calibrating the head's acceptance" if tau_curve is None
                        else "timing the head's drafting")
        done = ([f"forward costs from the cache (measured {budget_cache.when(table_date)})"]
                if table is not None else [])
        where = budget_cache.cache_dir()
        kept = (f" (kept in {where} for the next start)"
                if where is not None and (table is None or calibration_key is not None) else "")
        print("jakiro: choosing the tree budget (total_token=-1): " + "; ".join(done + [" and ".join(work)])
              + kept, file=sys.stderr, flush=True)
    if table is None:
        table = forward_costs(ea.base_model, candidates, fast)
        budget_cache.store(table_key, table)
    if calibrating:
        calibration = calibrate(ea, candidates)
        budget_cache.store(calibration_key, calibration)
    step = table.step_ms
    if tau_curve is not None:
        curve, source = tau_curve
        tau = {n: interpolate_tau(curve, n) for n in candidates}
    elif calibration is not None:
        tau, source = calibration["tau"], f"calibration ({calibration['rounds']} greedy rounds on built-in prompts)"
    else:
        tau, source = {n: prior_tau(n) for n in candidates}, f"prior N ** {PRIOR_EXPONENT} (no measured curve)"
    draft = 1000 * calibration["draft_s"] / step if calibration else 0.0
    bookkeeping = 1000 * calibration["bookkeeping_s"] / step if calibration else 0.0
    rounds = {n: draft + bookkeeping + table.round_cost(n, tau[n], fast=fast) for n in candidates}
    score = {n: tau[n] / rounds[n] for n in candidates}
    best = max(candidates, key=lambda n: (score[n], -n))
    verify_ms = {e.rows: (e.fast_ms if fast and e.fast_ms is not None else e.verify_ms) for e in table.entries}
    if table_date is not None and not calibrating:
        oldest = min(d for d in (table_date, calibration_date) if d is not None)
        print(f"jakiro: tree budget from the cache (measured {budget_cache.when(oldest)}): total_token={best}; "
              f"{budget_cache.ENV}=0 measures it again", file=sys.stderr, flush=True)
    return BudgetChoice(best, source, tau, rounds, score, draft, bookkeeping, fast, step, verify_ms)


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
