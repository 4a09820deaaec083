"""Speed and acceptance metrics from per-turn statistics, with one definition each (see docs/evaluation.md).

* tokens/s = total new tokens / total wall time (pooled over all turns of the set);
* speedup = tokens/s of the method / tokens/s of the baseline, over the same questions;
* τ (mean acceptance length) = mean over verification rounds of the tokens a round produced
  (accepted draft tokens + the target's bonus token); the prefill is not a round. Files without
  per-round lengths (original logs) give Σ new_tokens / Σ rounds, the same quantity there;
* α_k (per-depth acceptance rate) = rounds that accepted at least k drafts / rounds that accepted
  at least k-1, for k = 1 .. the deepest draft a round can accept.

The original scripts' formulas are reported beside them under ``*_published`` so published logs
can be checked: speedup = mean of per-question method rates / mean of per-question baseline rates,
τ = mean over questions of Σ new_tokens / Σ idxs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from .answer_sets import TurnStats

OVERALL = "overall"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def per_question(turns: Iterable[TurnStats]) -> dict:
    """question_id -> its turns."""
    groups: dict = defaultdict(list)
    for turn in turns:
        groups[turn.question_id].append(turn)
    return dict(groups)


def tokens_per_second(turns: list[TurnStats]) -> float | None:
    return _ratio(sum(t.new_tokens for t in turns), sum(t.wall_time for t in turns))


def mean_rate_per_question(turns: list[TurnStats]) -> float | None:
    """Mean over questions of (Σ new tokens / Σ wall time): the original scripts' per-question speed."""
    rates = [_ratio(sum(t.new_tokens for t in q), sum(t.wall_time for t in q)) for q in per_question(turns).values()]
    rates = [r for r in rates if r is not None]
    return sum(rates) / len(rates) if rates else None


def mean_accept_length(turns: list[TurnStats]) -> float | None:
    """τ; None when the rounds are unknown (``generate`` engines)."""
    if turns and all(t.accept_lengths is not None for t in turns):
        lengths = [a for t in turns for a in t.accept_lengths]
        return _ratio(sum(lengths), len(lengths))
    if turns and all(t.rounds is not None for t in turns):
        return _ratio(sum(t.new_tokens for t in turns), sum(t.rounds for t in turns))
    return None


def published_tau(turns: list[TurnStats]) -> float | None:
    """The original τ: mean over questions of Σ new_tokens / Σ idxs (idxs = rounds - 1, slightly optimistic)."""
    if not turns or any(t.idx is None for t in turns):
        return None
    ratios = [_ratio(sum(t.new_tokens for t in q), sum(t.idx for t in q)) for q in per_question(turns).values()]
    ratios = [r for r in ratios if r is not None]
    return sum(ratios) / len(ratios) if ratios else None


def acceptance_rates(turns: list[TurnStats], max_path_drafts: int | None = None) -> list[float | None] | None:
    """α_1..α_K from per-round accept lengths; K = ``max_path_drafts`` or the deepest accepted draft."""
    if not turns or any(t.accept_lengths is None for t in turns):
        return None
    accepted = [a - 1 for t in turns for a in t.accept_lengths]
    depth = max_path_drafts if max_path_drafts else max(accepted, default=0)
    rates = []
    for k in range(1, depth + 1):
        reached = sum(1 for a in accepted if a >= k - 1)
        rates.append(_ratio(sum(1 for a in accepted if a >= k), reached))
    return rates


def summarize(turns: list[TurnStats], max_path_drafts: int | None = None) -> dict:
    """The metrics of one set of turns (a whole file or one category)."""
    rounds = sum(t.rounds for t in turns) if turns and all(t.rounds is not None for t in turns) else None
    return {
        "questions": len(per_question(turns)),
        "turns": len(turns),
        "new_tokens": sum(t.new_tokens for t in turns),
        "wall_time": sum(t.wall_time for t in turns),
        "rounds": rounds,
        "tokens_per_second": tokens_per_second(turns),
        "tau": mean_accept_length(turns),
        "alpha": acceptance_rates(turns, max_path_drafts),
        "tau_published": published_tau(turns),
    }


def speedups(method: list[TurnStats], baseline: list[TurnStats]) -> dict:
    """Pooled speedup and the original ratio-of-means speedup of ``method`` over ``baseline``."""
    fast, slow = tokens_per_second(method), tokens_per_second(baseline)
    fast_q, slow_q = mean_rate_per_question(method), mean_rate_per_question(baseline)
    return {"speedup": fast / slow if fast is not None and slow else None,
            "speedup_published": fast_q / slow_q if fast_q is not None and slow_q else None}


# Spec-Bench reports its 80 MT-bench questions (8 categories) as one task beside translation, summarization,
# qa, math_reasoning and rag; a question set mixing MT-bench categories with others gets that group too.
MT_BENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
MT_BENCH_TASK = "mt_bench"


def by_category(turns: list[TurnStats]) -> dict[str, list[TurnStats]]:
    """category -> turns, categories in first-seen order, plus ``overall`` first (and ``mt_bench``, see above)."""
    groups: dict[str, list[TurnStats]] = {OVERALL: list(turns)}
    for turn in turns:
        groups.setdefault(turn.category, []).append(turn)
    mt_bench = [t for t in turns if t.category in MT_BENCH_CATEGORIES]
    if mt_bench and len(mt_bench) < len(turns) and MT_BENCH_TASK not in groups:
        groups[MT_BENCH_TASK] = mt_bench
    return groups


def category_of(turns: list[TurnStats]) -> dict:
    """question_id -> category."""
    return {t.question_id: t.category for t in turns}


def summarize_against(method: list[TurnStats], baseline: list[TurnStats] | None,
                      max_path_drafts: int | None = None) -> dict[str, dict]:
    """Metrics per category (and ``overall``), with speedups where a baseline is given.

    The method's categories are used for both files, so a baseline without categories still splits."""
    groups = by_category(method)
    base_groups: dict[str, list[TurnStats]] = {}
    if baseline is not None:
        categories = category_of(method)
        base_groups = by_category([replace(t, category=categories.get(t.question_id, t.category)) for t in baseline])
    result = {}
    for name, turns in groups.items():
        summary = summarize(turns, max_path_drafts)
        summary.update(speedup=None, speedup_published=None, baseline_tokens_per_second=None)  # one schema
        if baseline is not None:
            summary.update(speedups(turns, base_groups.get(name, [])))
            summary["baseline_tokens_per_second"] = tokens_per_second(base_groups.get(name, []))
        result[name] = summary
    return result
