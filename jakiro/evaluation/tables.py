"""Markdown tables for the terminal and for reports (one format, readable in both)."""

from __future__ import annotations

from collections.abc import Sequence


def fmt(value, digits: int = 2) -> str:
    """A number for a table; ``n/a`` where a metric does not apply."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_alpha(alpha: list | None) -> str:
    if not alpha:
        return "n/a"
    return " ".join(fmt(a) for a in alpha)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A padded Markdown table (numbers right-aligned)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "| " + " | ".join(("-" * w) if i == 0 else ("-" * (w - 1) + ":") for i, w in enumerate(widths)) + " |"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)]) + "\n"
