"""Fixtures for the evaluation tests: a tiny base model folder, draft heads for it, and question files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.jsonl import read_jsonl, write_jsonl  # noqa: F401  (read_jsonl: for the tests of this folder)
from tests.helpers.tiny_models import build_tiny_tokenizer, save_tiny_base, save_tiny_head

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["write a short poem about the sea", "now make it rhyme"]},
    {"question_id": 2, "category": "math", "turns": ["what is two plus two", "explain your answer step by step please"]},
]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU spinning OpenMP threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """``base`` (answers run to max length), ``jakiro`` and ``eagle2`` head folders. Read-only."""
    root = tmp_path_factory.mktemp("eval-models")
    base = save_tiny_base(root / "base")
    return {"base": base, "jakiro": save_tiny_head(base, root / "jakiro-head"),
            "eagle2": save_tiny_head(base, root / "eagle2-head", num_experts=1)}


@pytest.fixture(scope="session")
def question_file(tmp_path_factory) -> Path:
    """Two multi-turn questions in the MT-bench format."""
    return write_jsonl(tmp_path_factory.mktemp("questions") / "question.jsonl", QUESTIONS)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer folder alone (for recounting tokens of original baseline files)."""
    folder = tmp_path_factory.mktemp("tokenizer")
    build_tiny_tokenizer().save_pretrained(folder)
    return folder
