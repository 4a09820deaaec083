"""Fixtures for data generation: a tiny base model folder and a few ShareGPT conversations."""

from __future__ import annotations

import json

import pytest

from tests.helpers.tiny_models import save_tiny_base

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
    from tests.helpers.tiny_models import build_tiny_base, build_tiny_tokenizer

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
