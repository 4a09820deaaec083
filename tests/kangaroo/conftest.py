"""Fixtures for Kangaroo: tiny training data with the exit layer's hidden states saved."""

from __future__ import annotations

import json

import pytest

from jakiro.ge_data.allocation import main as generate
from tests.conftest import CONVERSATIONS


@pytest.fixture(scope="session")
def kangaroo_data(tiny_base_dir, tmp_path_factory):
    """Self-distilled data for the tiny 2-layer base with ``hidden_state_layer1`` (exit layer 1) saved."""
    folder = tmp_path_factory.mktemp("kangaroo-data")
    source = folder / "conversations.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in CONVERSATIONS * 4))
    out = folder / "data"
    generate(["--data-path", str(source), "--base-model-path", str(tiny_base_dir), "--outdir", str(out),
              "--shard-size", "4", "--regenerate", "--max-new-tokens", "24", "--max-turns", "2", "--save-layers", "1"])
    return out
