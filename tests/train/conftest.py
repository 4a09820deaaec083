"""Fixtures for training: tiny base model folders and data generated from a few conversations."""

from __future__ import annotations

import pytest

from tests.helpers.training import generate_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tiny_base_dir, tmp_path_factory):
    """Training data for the tiny base (regenerated answers, so there are enough assistant tokens)."""
    folder = tmp_path_factory.mktemp("train-data")
    return generate_tiny_data(tiny_base_dir, folder)
