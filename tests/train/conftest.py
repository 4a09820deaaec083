"""Fixtures for training: tiny base model folders and data generated from a few conversations."""

from __future__ import annotations

import json

import pytest

from jakiro.ge_data.allocation import main as generate
from tests.conftest import CONVERSATIONS


@pytest.fixture(scope="session")
def tiny_data(tiny_base_dir, tmp_path_factory):
    """Training data for the tiny base (regenerated answers, so there are enough assistant tokens)."""
    folder = tmp_path_factory.mktemp("train-data")
    source = folder / "conversations.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in CONVERSATIONS * 4))
    out = folder / "data"
    generate(["--data-path", str(source), "--base-model-path", str(tiny_base_dir), "--outdir", str(out),
              "--shard-size", "4", "--regenerate", "--max-new-tokens", "24", "--max-turns", "2"])
    return out
