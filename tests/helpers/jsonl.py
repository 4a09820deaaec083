"""JSON-lines files in tests (question files, answer files, metrics)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every line a record: a blank or torn line fails the test that reads it."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
