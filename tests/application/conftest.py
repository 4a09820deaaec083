"""Fixtures for the chat interfaces: a tiny random chat model folder and the EaModel built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tiny_chat_model import save_tiny_chat_model


@pytest.fixture(scope="session")
def tiny_chat_model_path(tmp_path_factory) -> Path:
    """Folder of a tiny random LLaMA whose tokenizer has a chat template (context 512)."""
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


@pytest.fixture(scope="session")
def tiny_short_context_path(tmp_path_factory) -> Path:
    """The same kind of model with a 64-token context, to provoke context-length errors."""
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-short-context"), max_position_embeddings=64)


@pytest.fixture(scope="session")
def tiny_ea_model(tiny_chat_model_path):
    """An EaModel with a random head on the tiny model (small tree, so steps are fast)."""
    from jakiro.base_models import load_base_model
    from jakiro.model.ea_model import EaModel

    base, tokenizer = load_base_model(str(tiny_chat_model_path))
    return EaModel.from_base_model(base, tokenizer, total_token=8, depth=3, top_k=4, seed=0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests use tiny models: one thread avoids oversubscribing small shared CI machines."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_model_args(tiny_chat_model_path) -> list[str]:
    """Command-line arguments that select the tiny model with a random head and a small tree."""
    return ["--base-model-path", str(tiny_chat_model_path), "--random-head", "--total-token", "8", "--depth", "3",
            "--top-k-tree", "4"]
