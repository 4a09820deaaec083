"""Fixtures for Kangaroo: tiny training data with the exit layer's hidden states saved."""

from __future__ import annotations

import pytest

from tests.helpers.training import generate_tiny_data


@pytest.fixture(scope="session")
def kangaroo_data(tiny_base_dir, tmp_path_factory):
    """Self-distilled data for the tiny 2-layer base with ``hidden_state_layer1`` (exit layer 1) saved."""
    folder = tmp_path_factory.mktemp("kangaroo-data")
    return generate_tiny_data(tiny_base_dir, folder, "--save-layers", "1")
