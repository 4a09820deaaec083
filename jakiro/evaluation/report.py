"""The side-by-side benchmark's report: metrics per contender, the Markdown table, JSON and figures.

Cycle cost = mean time of one draft+verify cycle (wall time minus prefill, per round) divided by the
mean time of one plain decode step of the ``naive`` contender; speedup ≈ τ / cycle cost.
"""

from __future__ import annotations

from pathlib import Path

from .answer_sets import TurnStats, load_answer_set
from .contenders import Contender
from .files import write_json_atomic, write_text_atomic
from .metrics import OVERALL, by_category, summarize_against
from .tables import fmt, markdown_table


def cycle_time(turns: list[TurnStats]) -> float | None:
    """Mean seconds per verification round after the prefill; None where rounds or prefill are unknown."""
    if not turns or any(t.rounds is None or t.prefill_time is None for t in turns):
        return None
    cycles = sum(t.rounds for t in turns)
    return sum(t.wall_time - t.prefill_time for t in turns) / cycles if cycles else None


def agreement(turns: list[TurnStats], reference: list[TurnStats]) -> float | None:
    """Fraction of turns whose answer text equals the reference's (lossless greedy decoding gives 1)."""
    texts = {(t.question_id, t.turn): t.text for t in reference}
    pairs = [(t.text, texts.get((t.question_id, t.turn))) for t in turns]
    return sum(1 for a, b in pairs if a is not None and a == b) / len(pairs) if pairs else None


def build_report(contenders: list[Contender], files: dict[str, Path], question_ids: list, reference: str,
                 meta: dict, greedy: bool, cycle_reference: str = "naive") -> dict:
    """Metrics of every contender on the given questions, relative to ``reference``."""
    wanted = set(question_ids)
    turns = {c.name: [t for t in load_answer_set(files[c.name]).turns if t.question_id in wanted]
             for c in contenders}
    ref_turns = turns[reference]
    plain = by_category(turns[cycle_reference]) if cycle_reference in turns else {}
    methods = []
    for contender in contenders:
        settings = load_answer_set(files[contender.name]).settings
        summary = summarize_against(turns[contender.name], ref_turns, settings.get("max_path_drafts"))
        for category, group in by_category(turns[contender.name]).items():
            mine, step = cycle_time(group), cycle_time(plain.get(category, []))
            summary[category]["cycle_time"] = mine
            summary[category]["cycle_cost"] = mine / step if mine is not None and step else None
        summary[OVERALL]["greedy_agreement"] = agreement(turns[contender.name], ref_turns) if greedy else None
        methods.append({"name": contender.name, "label": contender.label, "path": str(files[contender.name]),
                        "settings": settings, "overall": summary[OVERALL],
                        "categories": {k: v for k, v in summary.items() if k != OVERALL}})
    report = {"kind": "jakiro-compare", "reference": reference, "cycle_reference": cycle_reference,
              "meta": meta, "methods": methods}
    report["markdown"] = render_markdown(report)
    return report


def render_markdown(report: dict) -> str:
    meta, methods = report["meta"], report["methods"]
    ref_label = next(m["label"] for m in methods if m["name"] == report["reference"])
    settings = meta["settings"]
    budget = f"{meta['total_token']}"
    if meta.get("budget_timings"):
        budget += f" (auto: chosen by timing {meta['device_name']}"
        if meta.get("budget_choice"):
            budget += f" against τ from the {meta['budget_choice']['tau_source']}"
        budget += ")"
    depth = f"{meta['depth']}"
    if meta.get("depth_requested") not in (None, meta["depth"]):
        depth += f" (chosen with the budget; at most {meta['depth_requested']})"
    lines = [
        f"# Side-by-side benchmark: {meta['base_model_name']} on {meta['bench']}",
        "",
        f"- questions: {methods[0]['overall']['questions']}, turns: {methods[0]['overall']['turns']}; "
        f"temperature {settings['temperature']}, top-p {settings['top_p']}, top-k {settings['top_k']}, "
        f"max new tokens {settings['max_new_token']}, seed {settings['seed']}",
        f"- device: {meta['device']} ({meta['device_name']}), dtype {settings['dtype']}, threads {meta['threads']}",
        f"- tree: total_token {budget}, depth {depth}, top_k {meta['top_k_tree']}",
        f"- jakiro {meta['library_version']}, torch {meta['torch']}, transformers {meta['transformers']}",
        "",
    ]
    headers = ["contender", "tokens/s", f"speedup vs {ref_label}", "tau", "cycle cost", "new tokens"]
    greedy = any(m["overall"].get("greedy_agreement") is not None for m in methods)
    if greedy:
        headers.append(f"same text as {ref_label}")
    rows = []
    for m in methods:
        s = m["overall"]
        row = [m["label"], fmt(s["tokens_per_second"]), fmt(s.get("speedup")), fmt(s["tau"]), fmt(s.get("cycle_cost")),
               fmt(s["new_tokens"])]
        if greedy:
            row.append(fmt(s.get("greedy_agreement")))
        rows.append(row)
    lines.append(markdown_table(headers, rows))
    categories = list(dict.fromkeys(c for m in methods for c in m["categories"]))
    if len(categories) > 1:
        lines.append(f"## speedup vs {ref_label} per category\n")
        lines.append(markdown_table(["category", *(m["label"] for m in methods)],
                                    [[c, *(fmt(m["categories"].get(c, {}).get("speedup")) for m in methods)]
                                     for c in categories]))
    lines.append("cycle cost: mean draft+verify cycle time / one plain decode step of the plain loop; "
                 "tau: tokens per verification round, bonus token included (docs/evaluation.md).\n")
    return "\n".join(lines)


def write_outputs(report: dict, out_dir: Path, figures: bool = True) -> list[Path]:
    """``compare.json``, ``compare.md`` and (optionally) ``figs/compare_*.png`` under ``out_dir``."""
    from .plot import draw

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "compare.json", out_dir / "compare.md"]
    write_json_atomic(written[0], {k: v for k, v in report.items() if k != "markdown"})
    write_text_atomic(written[1], report["markdown"])
    if figures:
        written += draw(report["methods"], out_dir / "figs", ("tokens_per_second", "speedup", "tau"), "compare_")
    return written
