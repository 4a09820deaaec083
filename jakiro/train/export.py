"""Re-save a trained head in another dtype (e.g. bf16 for shipping): `python -m jakiro.train.export --help`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..base_models import parse_dtype
from ..commands import exit_on_error
from ..methods import load_head


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.export", description=__doc__)
    parser.add_argument("--head", required=True, help="head folder written by training")
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--dtype", default="bfloat16", help="float32, float16 or bfloat16 (default)")
    return parser


def export(args: argparse.Namespace) -> Path:
    head = load_head(args.head)  # any method: the class its config.json names
    out = Path(args.out)
    head.save_pretrained(out, dtype=parse_dtype(args.dtype))
    print(f"wrote {out} ({args.dtype})")
    return out


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), export, argv)


if __name__ == "__main__":
    main()
