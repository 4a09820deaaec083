"""Fixtures for the chat interfaces: a tiny random chat model folder (tests/helpers) and an EaModel on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_models import save_tiny_base, save_tiny_head


# With these weights greedy answers fall into loops that even a random head (seed 0) often guesses
# (mean accepted length 3-4), so highlighting has accepted draft tokens to show; the tests check it.
BASE_SEED = 6


@pytest.fixture(scope="session")
def tiny_chat_model_path(tmp_path_factory) -> Path:
    """Folder of a tiny random LLaMA (context 512) whose tokenizer has a chat template; it never emits EOS."""
    return save_tiny_base(tmp_path_factory.mktemp("tiny-chat-model"), seed=BASE_SEED)


@pytest.fixture(scope="session")
def tiny_head_path(tiny_chat_model_path, tmp_path_factory) -> Path:
    """A saved random Jakiro head for that model, to load through ``--ea-model-path``."""
    return save_tiny_head(tiny_chat_model_path, tmp_path_factory.mktemp("tiny-head") / "head")


@pytest.fixture(scope="session")
def tiny_ea_model(tiny_chat_model_path):
    """An EaModel with a random head (seed 0) on the tiny model; small tree, so steps are fast."""
    from jakiro.base_models import load_base_model
    from jakiro.model.ea_model import EaModel

    base, tokenizer = load_base_model(str(tiny_chat_model_path))
    return EaModel.from_base_model(base, tokenizer, total_token=8, depth=3, top_k=4, seed=0)


@pytest.fixture()
def tiny_model_args(tiny_chat_model_path) -> list[str]:
    """Command-line arguments selecting the tiny model with the same random head and tree as `tiny_ea_model`."""
    return ["--base-model-path", str(tiny_chat_model_path), "--random-head", "--total-token", "8", "--depth", "3",
            "--top-k-tree", "4"]
