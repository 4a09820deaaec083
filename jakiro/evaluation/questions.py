"""Question sets: the packaged MT-bench and Spec-Bench files, or any question.jsonl in the MT-bench format.

A question line is ``{"question_id": int|str, "category": str, "turns": [str, ...]}``; ``category`` is
optional (missing means ``"uncategorized"``) so home-made files stay easy to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BENCHES = ("mt_bench", "spec_bench")
UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: list[str] = field(hash=False)


def resolve_bench(bench: str) -> tuple[str, Path]:
    """``(label, question file)`` for a packaged bench name or a path (file, or folder holding question.jsonl)."""
    if bench in BENCHES:
        return bench, DATA_DIR / bench / "question.jsonl"
    path = Path(bench)
    if path.is_dir():
        path = path / "question.jsonl"
        if not path.is_file():
            raise ConfigError(f"{bench!r} is a folder without question.jsonl: pass the question file itself")
        return path.parent.name, path
    if path.is_file():
        label = path.parent.name if path.stem == "question" and path.parent.name else path.stem
        return label or "custom", path
    if path.suffix == ".jsonl" or "/" in bench or "\\" in bench:
        raise ConfigError(f"question file {bench!r} not found: pass an existing question.jsonl")
    raise ConfigError(f"unknown bench {bench!r}: use {' or '.join(BENCHES)}, or a path to a question.jsonl")


def _parse_question(line: str, where: str) -> Question:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where} is not valid JSON ({err.msg}): fix the question file") from None
    if not isinstance(data, dict) or "question_id" not in data or "turns" not in data:
        raise ConfigError(f"{where} needs 'question_id' and 'turns' (MT-bench question format)")
    turns = data["turns"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise ConfigError(f"{where}: 'turns' must be a non-empty list of strings")
    qid = data["question_id"]
    if not isinstance(qid, (int, str)) or isinstance(qid, bool):
        raise ConfigError(f"{where}: 'question_id' must be an integer or a string, got {qid!r}")
    return Question(qid, str(data.get("category") or UNCATEGORIZED), list(turns))


def read_questions(path: Path) -> list[Question]:
    """All questions of a file, validated (unique ids, non-empty turns)."""
    if not path.is_file():
        raise ConfigError(f"question file {str(path)!r} not found")
    questions, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            question = _parse_question(line, f"{path}:{number}")
            if question.question_id in seen:
                raise ConfigError(f"{path}:{number}: duplicate question_id {question.question_id!r}")
            seen.add(question.question_id)
            questions.append(question)
    if not questions:
        raise ConfigError(f"question file {str(path)!r} holds no questions")
    return questions


def load_questions(bench: str, begin: int | None = None, end: int | None = None,
                   per_category: int | None = None) -> tuple[str, list[Question]]:
    """``(label, questions[begin:end])`` of a bench; the slice is by position, as in FastChat.

    ``per_category`` then keeps the first N questions of every category, in file order: a small
    sample that still covers each category (Spec-Bench's 480 questions are 80 per task, in blocks).
    """
    label, path = resolve_bench(bench)
    questions = read_questions(path)
    for name, value in (("question-begin", begin), ("question-end", end)):
        if value is not None and value < 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")
    if per_category is not None and per_category < 1:
        raise ConfigError(f"--per-category must be >= 1, got {per_category}")
    selected = questions[begin:end]
    if not selected:
        raise ConfigError(f"--question-begin {begin} / --question-end {end} select no question of {len(questions)}")
    if per_category is not None:
        taken: dict[str, int] = {}
        kept = []
        for question in selected:
            if taken.get(question.category, 0) < per_category:
                taken[question.category] = taken.get(question.category, 0) + 1
                kept.append(question)
        selected = kept
    return label, selected


def categories_by_id(bench: str) -> dict[int | str, str]:
    """question_id -> category of a bench (to group answer files that do not record categories)."""
    return {q.question_id: q.category for q in read_questions(resolve_bench(bench)[1])}
