"""What every command-line entry point shares: library errors become one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import JakiroError


def run_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Parse, run, and report library errors as one line on stderr (exit code 2)."""
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except JakiroError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def exit_on_error(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object],
                  argv: Sequence[str] | None = None) -> None:
    """For commands that return normally on success: a library error exits with code 2 after its one line."""
    def run_ignoring_result(args: argparse.Namespace) -> None:
        run(args)

    code = run_main(parser, run_ignoring_result, argv)
    if code:
        raise SystemExit(code)
