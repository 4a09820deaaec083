"""Figures: speedup and τ per category and method, as grouped bar charts (PNG).

Reads the JSON written by `jakiro.evaluation.speed` or `jakiro.evaluation.compare` (both list
``methods`` with ``overall`` and ``categories`` summaries).

    python -m jakiro.evaluation.plot speed_t0.json speed_t1.json --out-dir figs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .cli import run_main

METRICS = {"speedup": "speedup", "tau": "τ (tokens per round)", "tokens_per_second": "tokens/s"}


def load_entries(path: str | Path) -> list[dict]:
    """The method entries of a speed or compare report; labels get the file name when several files are read."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"report {str(path)!r} not found: pass a JSON written by speed or compare")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err.msg})") from None
    if not isinstance(report, dict) or not isinstance(report.get("methods"), list):
        raise ConfigError(f"{path} is not a speed or compare report (no 'methods' list)")
    return report["methods"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(entries: list[dict], metric: str, path: str | Path, title: str | None = None) -> Path | None:
    """One group of bars per category (``overall`` last), one bar per method; None when no value exists."""
    categories = list(dict.fromkeys(c for e in entries for c in e.get("categories", {}))) + ["overall"]

    def value(entry: dict, category: str):
        summary = entry["overall"] if category == "overall" else entry.get("categories", {}).get(category, {})
        return summary.get(metric)

    entries = [e for e in entries if any(value(e, c) is not None for c in categories)]  # e.g. no τ for `generate`
    if not entries:
        return None
    plt = _pyplot()
    width = 0.8 / max(len(entries), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 2.5 + 1.1 * len(categories) * max(1, len(entries)) ** 0.5), 4.0))
    for i, entry in enumerate(entries):
        xs = [j + (i - (len(entries) - 1) / 2) * width for j in range(len(categories))]
        ys = [value(entry, c) or 0.0 for c in categories]
        ax.bar(xs, ys, width=width, label=entry.get("label", f"method {i + 1}"))
    if metric == "speedup":
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.set_title(title or f"{METRICS.get(metric, metric)} per category")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw(entries: list[dict], out_dir: str | Path, metrics: Sequence[str] = ("speedup", "tau"),
         prefix: str = "") -> list[Path]:
    """Draw each metric into ``out_dir/{prefix}{metric}_by_category.png``; returns the files written."""
    written = []
    for metric in metrics:
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}: use some of {', '.join(METRICS)}")
        path = grouped_bars(entries, metric, Path(out_dir) / f"{prefix}{metric}_by_category.png")
        if path is not None:
            written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="JSON written by jakiro.evaluation.speed or .compare")
    parser.add_argument("--out-dir", default="figs", help="folder for the PNG files (default figs/)")
    parser.add_argument("--metrics", default="speedup,tau", help="comma-separated: speedup, tau, tokens_per_second")
    parser.add_argument("--prefix", default="", help="file name prefix (e.g. mt_bench_t0_)")
    return parser


def run(args: argparse.Namespace) -> int:
    entries = []
    for report in args.reports:
        loaded = load_entries(report)
        if len(args.reports) > 1:
            loaded = [{**e, "label": f"{e.get('label')} ({Path(report).stem})"} for e in loaded]
        entries.extend(loaded)
    if not entries:
        raise ConfigError("the reports list no method")
    written = draw(entries, args.out_dir, [m.strip() for m in args.metrics.split(",") if m.strip()], args.prefix)
    if not written:
        raise ConfigError("nothing to draw: the reports hold none of the requested metrics (speedup needs a baseline)")
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
