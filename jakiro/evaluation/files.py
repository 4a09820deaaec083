"""Result-file plumbing: append-and-flush JSONL for long jobs, resume, atomic JSON/text writes.

Answer files grow one line per question and are flushed at once, so a killed job loses at most the
question in flight and a rerun skips what is done. Summaries are written to a temp file and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError
from ..files import write_json_atomic, write_text_atomic  # noqa: F401  (re-exported)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every JSON object of a JSONL file; a clear error naming the line when one is broken."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"answer file {str(path)!r} not found")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{number} is not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{number} is not a JSON object")
            records.append(record)
    return records


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one record and flush it to disk now."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _sort_key(qid) -> tuple:
    return (0, qid, "") if isinstance(qid, int) else (1, 0, str(qid))


def tidy_answer_file(path: str | Path) -> None:
    """Sort by question id and keep the last record of each id (reruns append), atomically."""
    path = Path(path)
    if not path.is_file():
        return
    latest = {}
    for record in read_jsonl(path):
        latest[record.get("question_id")] = record
    ordered = sorted(latest.values(), key=lambda r: _sort_key(r.get("question_id")))
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
