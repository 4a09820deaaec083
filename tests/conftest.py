"""Shared fixtures: tiny random LLaMA / Qwen2 base models (built once per session; never mutate them)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.tiny_models import build_tiny_base, build_tiny_tokenizer, save_tiny_base
from tests.utils import build_base

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def budget_cache_off_home(tmp_path_factory):
    """The tree budget cache (`jakiro.model.budget_cache`) never goes to the real $JAKIRO_HOME, not even from
    module- or session-scoped fixtures (set up before any test's own fixtures); subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAKIRO_BUDGET_CACHE", str(tmp_path_factory.mktemp("budget-cache-shared")))
        yield


@pytest.fixture(autouse=True)
def budget_cache_in_tmp(budget_cache_off_home, monkeypatch, tmp_path_factory):
    """Each test has its own tree budget cache folder: no test reads another test's measurements."""
    monkeypatch.setenv("JAKIRO_BUDGET_CACHE", str(tmp_path_factory.mktemp("budget-cache")))


@pytest.fixture(scope="session")
def tiny_base():
    """``tiny_base(arch="llama", **options)`` -> a cached tiny model (see `tests.utils.build_base`). Read-only."""
    cache = {}

    def get(arch: str = "llama", **options):
        key = (arch, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = build_base(arch, **options)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def llama_base(tiny_base):
    return tiny_base("llama")


@pytest.fixture(scope="session")
def qwen2_base(tiny_base):
    return tiny_base("qwen2")


# -- folders for the command-line pipelines (data generation, training) ------------------------
CONVERSATIONS = [
    {"id": "a", "conversations": [{"from": "human", "value": "write a short poem about the sea"},
                                  {"from": "gpt", "value": "the sea and the sky"},
                                  {"from": "human", "value": "now make it rhyme"},
                                  {"from": "gpt", "value": "the cat sat on the mat"}]},
    {"id": "b", "conversations": [{"from": "human", "value": "what is two plus two"},
                                  {"from": "gpt", "value": "two plus two and why"}]},
    {"id": "c", "conversations": [{"from": "human", "value": "tell me a story about a small robot"}]},
    {"id": "d", "conversations": [{"from": "gpt", "value": "a reply with no question"},
                                  {"from": "human", "value": "explain your answer step by step please"},
                                  {"from": "gpt", "value": "the dog sat on the log"}]},
    {"id": "e", "conversations": [{"from": "system", "value": "keep it short"},
                                  {"from": "human", "value": "summarize the story in one line"},
                                  {"from": "gpt", "value": "a small robot sat on the mat"}]},
]


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    return save_tiny_base(tmp_path_factory.mktemp("base") / "tiny-base", avoid_eos=False)


@pytest.fixture(scope="session")
def other_base_dir(tmp_path_factory):
    """A base model of another architecture (different seed and hidden size): its data must be refused."""
    folder = tmp_path_factory.mktemp("other") / "other-base"
    tokenizer = build_tiny_tokenizer()
    build_tiny_base(tokenizer, seed=3, hidden_size=48).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in CONVERSATIONS))
    return path
