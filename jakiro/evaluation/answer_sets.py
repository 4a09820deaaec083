"""Read answer files into per-turn statistics: this library's files and the original FastChat-style logs.

Both formats put per-turn lists in ``choices[0]``:

* ours: ``new_tokens``, ``rounds``, ``wall_time``, ``accept_lengths`` (per round) and a ``meta`` block;
* the original Jakiro/EAGLE scripts: ``new_tokens``, ``idxs`` (= rounds - 1) and ``wall_time``; their
  baseline files store ``new_tokens`` as 0 (or not at all), so token counts are then recovered the way
  the original ``speed.py`` did, by re-tokenising the answer text (``len(ids) - 1``), which needs the
  tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .files import read_jsonl
from .questions import UNCATEGORIZED


@dataclass
class TurnStats:
    """One answered turn. ``rounds`` = verification rounds; ``accept_lengths`` = tokens per round."""

    question_id: int | str
    category: str
    turn: int
    new_tokens: int
    wall_time: float
    rounds: int | None = None
    accept_lengths: list[int] | None = None
    prefill_time: float | None = None
    idx: int | None = None  # the original logs' loop index (rounds - 1)
    tokens_recounted: bool = False
    text: str | None = None


@dataclass
class AnswerSet:
    """All turns of one answer file."""

    path: str
    model_id: str
    format: str  # "jakiro" or "fastchat"
    meta: dict | None
    turns: list[TurnStats] = field(default_factory=list)

    @property
    def question_ids(self) -> set:
        return {t.question_id for t in self.turns}

    @property
    def settings(self) -> dict:
        return (self.meta or {}).get("settings") or {}

    def categories(self) -> list[str]:
        """Categories in first-seen order."""
        return list(dict.fromkeys(t.category for t in self.turns))


def _per_turn(choice: dict, key: str, count: int, where: str) -> list | None:
    values = choice.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or len(values) != count:
        raise ConfigError(f"{where}: '{key}' must be a list with one entry per turn ({count})")
    return values


def _recount(tokenizer, text: str) -> int:
    """Tokens of an answer as the original speed script counted them (ids minus the BOS)."""
    return max(len(tokenizer(text).input_ids) - 1, 0)


def load_answer_set(path: str | Path, categories: dict | None = None, tokenizer=None) -> AnswerSet:
    """Parse an answer file; ``categories`` (question_id -> category) fills in what the file lacks."""
    path = Path(path)
    records = read_jsonl(path)
    if not records:
        raise ConfigError(f"answer file {str(path)!r} holds no answers")
    latest: dict = {}
    for number, record in enumerate(records, 1):
        choices = record.get("choices")
        if "question_id" not in record or not isinstance(choices, list) or not choices \
                or not isinstance(choices[0], dict) or "wall_time" not in choices[0]:
            raise ConfigError(f"{path}: record {number} is not an answer (needs question_id and "
                              "choices[0].wall_time, as FastChat answer files have)")
        latest[record["question_id"]] = record  # reruns append: the last record of an id wins
    first = next(iter(latest.values()))
    meta = first.get("meta") if isinstance(first.get("meta"), dict) else None
    fmt = "jakiro" if meta and meta.get("library") == "jakiro" else "fastchat"
    answers = AnswerSet(str(path), str(first.get("model_id", path.stem)), fmt, meta)
    for qid, record in latest.items():
        answers.turns.extend(_record_turns(record, path, categories, tokenizer))
    return answers


def _record_turns(record: dict, path: Path, categories: dict | None, tokenizer) -> list[TurnStats]:
    qid = record["question_id"]
    where = f"{path} question {qid!r}"
    choice = record["choices"][0]
    wall = choice["wall_time"]
    if not isinstance(wall, list) or not wall:
        raise ConfigError(f"{where}: 'wall_time' must be a non-empty list (one entry per turn)")
    count = len(wall)
    new_tokens = _per_turn(choice, "new_tokens", count, where)
    rounds = _per_turn(choice, "rounds", count, where)
    idxs = _per_turn(choice, "idxs", count, where)
    accepts = _per_turn(choice, "accept_lengths", count, where)
    prefill = _per_turn(choice, "prefill_time", count, where)
    texts = _per_turn(choice, "turns", count, where)
    recount = new_tokens is None or not any(new_tokens)
    if recount:
        if tokenizer is None:
            raise ConfigError(f"{where} records no token counts (an original baseline file): "
                              "pass --tokenizer so they are recounted from the answer text")
        if texts is None:
            raise ConfigError(f"{where} has neither token counts nor answer texts")
        new_tokens = [_recount(tokenizer, text) for text in texts]
    category = record.get("category") or (categories or {}).get(qid) or UNCATEGORIZED
    turns = []
    for i in range(count):
        idx = idxs[i] if idxs is not None else None
        turn_rounds = rounds[i] if rounds is not None else (idx + 1 if idx is not None else None)
        turns.append(TurnStats(qid, category, i, int(new_tokens[i]), float(wall[i]), turn_rounds,
                               accepts[i] if accepts is not None else None,
                               prefill[i] if prefill is not None else None, idx, recount,
                               texts[i] if texts is not None else None))
    return turns
