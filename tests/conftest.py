"""Shared fixtures: tiny random LLaMA / Qwen2 base models (built once per session; never mutate them)."""

from __future__ import annotations

import pytest
import torch

from tests.utils import build_base

torch.set_num_threads(1)


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
