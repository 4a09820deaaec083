"""The training fixtures of tests/train (tiny base folders and data generated from a few conversations)."""

from tests.train.conftest import tiny_data  # noqa: F401  (a fixture, shared rather than copied)
