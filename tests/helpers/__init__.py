"""Builders shared by test packages (tiny model folders)."""
