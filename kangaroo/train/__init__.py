"""Training of Kangaroo adapters: `python -m kangaroo.train.main --help`."""
