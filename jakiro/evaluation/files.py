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


def _parse_record(line: bytes) -> dict | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def complete_records(path: str | Path) -> list[dict]:
    """The whole JSON records of a JSONL file, skipping any line that is not one; changes nothing (for counting
    what an interrupted run saved)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [r for r in map(_parse_record, path.read_bytes().splitlines()) if r is not None]


def drop_torn_last_line(path: str | Path) -> int:
    """Remove a last line that is not a whole JSON record (a write cut short by a kill); returns bytes dropped.

    Answer files grow by appending one line per finished question, so only the last line can be torn,
    and only a complete record counts as answered: its question is simply answered again. A complete
    record that lacks its newline gets one, so the next append starts a new line."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    body = data.rstrip(b"\r\n\t ")
    start = body.rfind(b"\n") + 1
    last = body[start:]
    if not last:
        return 0
    if _parse_record(last) is not None:
        if not data.endswith(b"\n"):
            write_text_atomic(path, data.decode("utf-8") + "\n")
        return 0
    try:
        kept = body[:start].decode("utf-8")
    except UnicodeDecodeError:  # not an answer file of ours: leave it for read_jsonl to report
        return 0
    write_text_atomic(path, kept)
    return len(data) - start


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
