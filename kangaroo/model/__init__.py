"""Kangaroo model parts: adapter config, adapter, early-exit rule, drafter."""
