"""Kangaroo evaluation: thin wrappers over `jakiro.evaluation` (answers, baseline, a settings sweep)."""
