"""Answer questions turn by turn with any engine and write FastChat-readable answer records.

Each turn is appended to the conversation (the decoded answer becomes the assistant message) and
the next prompt is rebuilt with the tokenizer's chat template, as FastChat does. Every question
is seeded from ``seed`` alone, so a resumed or re-sliced run reproduces the same sampling.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from ..chat import prompt_ids
from ..errors import ConfigError
from ..model.sampling import SamplingConfig
from .engines import Engine, TurnResult
from ..commands import run_main
from .files import append_jsonl, complete_records, drop_torn_last_line, read_jsonl, tidy_answer_file
from .questions import Question

INTERRUPTED = 130  # the shell's exit status for Ctrl-C
# Settings whose change makes old answers incomparable; checked before resuming a file.
RESUME_KEYS = ("engine", "temperature", "top_p", "top_k", "max_new_token", "total_token", "depth", "top_k_tree",
               "seed", "dtype", "base_model", "head_sha256", "bench",
               "threshold", "steps", "exit_layer", "tree_levels", "tree_width")  # the last ones: Kangaroo's drafter


@dataclass(frozen=True)
class GenerationPlan:
    """What every question is generated with."""

    sampling: SamplingConfig
    max_new_tokens: int
    seed: int = 0


def seed_everything(seed: int) -> None:
    """Seed every RNG a generation may touch (torch, CUDA, Python, NumPy)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % (2 ** 32))
    except ImportError:  # numpy is a dependency, but the seed must not be why a run fails
        pass


def decode_answer(tokenizer, tokens: list[int], stop_ids: set[int]) -> str:
    """Answer text: stop ids and special tokens dropped, surrounding whitespace stripped."""
    return tokenizer.decode([t for t in tokens if t not in stop_ids], skip_special_tokens=True).strip()


def new_choice() -> dict:
    return {"index": 0, "turns": [], "new_tokens": [], "rounds": [], "wall_time": [], "accept_lengths": [],
            "prompt_tokens": [], "prefill_time": [], "draft_time": [], "verify_time": []}


def add_turn(choice: dict, text: str, result: TurnResult) -> None:
    choice["turns"].append(text)
    choice["new_tokens"].append(len(result.tokens))
    choice["rounds"].append(result.rounds)
    choice["wall_time"].append(result.wall_time)
    choice["accept_lengths"].append(result.accept_lengths)
    choice["prompt_tokens"].append(result.prompt_tokens)
    choice["prefill_time"].append(result.prefill_time)
    choice["draft_time"].append(result.draft_time)
    choice["verify_time"].append(result.verify_time)


def answer_question(engine: Engine, tokenizer, question: Question, plan: GenerationPlan) -> dict:
    """All turns of one question in one conversation; returns the FastChat ``choice`` with per-turn stats."""
    seed_everything(plan.seed)
    messages: list[dict[str, str]] = []
    choice = new_choice()
    for turn in question.turns:
        messages.append({"role": "user", "content": turn})
        result = engine.generate(prompt_ids(tokenizer, messages), plan.sampling, plan.max_new_tokens)
        text = decode_answer(tokenizer, result.tokens, engine.stop_ids)
        add_turn(choice, text, result)
        messages.append({"role": "assistant", "content": text})
    return choice


def answer_record(question: Question, model_id: str, choice: dict, meta: dict) -> dict:
    """One answer line: FastChat's keys plus the category and this run's ``meta`` block."""
    return {"question_id": question.question_id, "answer_id": uuid.uuid4().hex[:22], "model_id": model_id,
            "category": question.category, "choices": [choice], "tstamp": time.time(), "meta": meta}


def warm_up(engine: Engine, tokenizer, question: Question, plan: GenerationPlan, passes: int) -> None:
    """Untimed passes over one question, so kernels, caches and allocators are warm before timing."""
    for _ in range(passes):
        answer_question(engine, tokenizer, question, plan)


def repair_answer_file(path: str | Path) -> None:
    """Drop a torn last line left by a killed run (saying so), so a rerun resumes instead of failing."""
    dropped = drop_torn_last_line(path)
    if dropped:
        print(f"note: dropped the incomplete last line of {path} ({dropped} bytes, a write cut short); "
              "its question is answered again", file=sys.stderr)


def answered_ids(path: str | Path) -> set:
    """Question ids with a complete record in ``path`` (a torn last line is not counted; nothing is changed)."""
    return {r["question_id"] for r in complete_records(path) if "question_id" in r}


def check_resumable(path: Path, settings: dict) -> set:
    """Question ids already answered in ``path``; refuses a file written with other settings."""
    repair_answer_file(path)
    if not path.exists():
        return set()
    done = set()
    for record in read_jsonl(path):
        old = (record.get("meta") or {}).get("settings") or {}
        changed = [f"{key}: {old.get(key)!r} -> {settings.get(key)!r}" for key in RESUME_KEYS
                   if key in old and old.get(key) != settings.get(key)]
        if changed:
            raise ConfigError(f"answer file {str(path)!r} was written with other settings ({'; '.join(changed)}): "
                              "pass another --answer-file or delete it")
        done.add(record.get("question_id"))
    return done


def run_answers(engine: Engine, tokenizer, questions: list[Question], answer_file: str | Path, model_id: str,
                meta: dict, plan: GenerationPlan, warmup: int = 1, progress: bool = True) -> int:
    """Answer the questions not yet in ``answer_file``, appending one flushed line each; returns how many."""
    from tqdm import tqdm

    path = Path(answer_file)
    done = check_resumable(path, meta.get("settings", {}))
    todo = [q for q in questions if q.question_id not in done]
    if todo and warmup > 0:
        warm_up(engine, tokenizer, todo[0], plan, warmup)
    for question in tqdm(todo, desc=model_id, unit="question", disable=not progress):
        append_jsonl(path, answer_record(question, model_id, answer_question(engine, tokenizer, question, plan), meta))
    tidy_answer_file(path)
    return len(todo)


def answer_interleaved(engines: dict[str, Engine], files: dict[str, Path], metas: dict[str, dict],
                       questions: list[Question], tokenizer, plan: GenerationPlan, warmup: int = 1,
                       progress: bool = True, desc: str = "questions") -> int:
    """Answer with several engines, interleaved: every engine answers a question, in order, before the next
    question (a slow phase of a shared machine hits all of them alike). Resumes from the questions every
    file already holds; statistics are reset after the warm-up, so they cover the timed answers only.
    Returns how many questions were answered."""
    from tqdm import tqdm

    done = None
    for name in engines:
        answered = check_resumable(files[name], metas[name]["settings"])
        done = answered if done is None else done & answered
    todo = [q for q in questions if q.question_id not in done]
    if todo and warmup > 0:
        for engine in engines.values():
            warm_up(engine, tokenizer, todo[0], plan, warmup)
    for engine in engines.values():
        engine.reset_statistics()
    for question in tqdm(todo, desc=desc, unit="question", disable=not progress):
        for name, engine in engines.items():
            choice = answer_question(engine, tokenizer, question, plan)
            append_jsonl(files[name], answer_record(question, name, choice, metas[name]))
    for path in files.values():
        tidy_answer_file(path)
    return len(todo)


def recorded_budget(path: str | Path) -> tuple[int, dict, int | None] | None:
    """The auto tree budget (its timings, and the depth chosen with it) an existing answer file was generated
    with, if any.

    A resumed ``--total-token -1`` run reuses it: timing again could pick another budget and make
    the old and new answers incomparable."""
    path = Path(path)
    repair_answer_file(path)
    if not path.is_file():
        return None
    for record in read_jsonl(path):
        meta = record.get("meta") or {}
        settings = meta.get("settings") or {}
        if settings.get("total_token_requested") == -1 and isinstance(settings.get("total_token"), int):
            depth = settings.get("depth")
            return (settings["total_token"], dict(meta.get("budget_timings") or {}),
                    depth if isinstance(depth, int) else None)
    return None


def answer_and_report(engine: Engine, tokenizer, questions: list[Question], answer_file: Path, model_id: str,
                      meta: dict, plan: GenerationPlan, args) -> int:
    """The answer commands' common end: answer (resuming), say where the answers went, exit code 0.

    Ctrl-C ends with one line saying how many answers are saved (exit code 130); a rerun resumes."""
    try:
        count = run_answers(engine, tokenizer, questions, answer_file, model_id, meta, plan, args.warmup,
                            progress=not args.no_progress)
    except KeyboardInterrupt:
        saved = len(answered_ids(answer_file) & {q.question_id for q in questions})
        print(f"\ninterrupted: {saved} of {len(questions)} answers are saved in {answer_file}; rerun the same "
              "command to answer the rest", file=sys.stderr)
        return INTERRUPTED
    print(f"{count} question(s) answered -> {answer_file}", file=sys.stderr)
    return 0


def run_answer_command(parser, run, argv) -> int:
    """`run_main` for the answer commands, plus Ctrl-C before answering started: one line, no traceback."""
    try:
        return run_main(parser, run, argv)
    except KeyboardInterrupt:
        print("\ninterrupted before any answer of this run was written; rerun the same command to start (or "
              "resume)", file=sys.stderr)
        return INTERRUPTED
