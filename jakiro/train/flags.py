"""The command-line flags every training command shares (`jakiro.train.main`, `kangaroo.train.main`).

Optimisation flags override ``train`` fields of the run configuration; ``--max-steps`` and ``--dtype`` are
settings of the job (`jakiro.train.loop.TrainingJob`), not saved with the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .loop import TauSettings, TrainingJob


def add_optimisation_flags(parser: argparse.ArgumentParser) -> None:
    """``--epochs`` ... ``--seed``: unset flags keep the config file's values (or `TrainConfig`'s defaults)."""
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="conversations per batch per process")
    parser.add_argument("--grad-accum", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--eval-sequences", type=int, default=None, metavar="N",
                        help="held-out conversations the held-out metrics read (default 32; with --eval-only, a large "
                             "N measures the whole held-out split)")
    parser.add_argument("--eval-starts", type=int, default=None, metavar="N",
                        help="chain-accuracy start positions per held-out conversation (default 16; 0: every answer "
                             "position)")


def optimisation_overrides(args: argparse.Namespace) -> dict:
    """The optimisation flags as `load_run_config` overrides (None: not given)."""
    return {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
            "max_len": args.max_len, "warmup_steps": args.warmup_steps, "seed": args.seed,
            "eval_sequences": args.eval_sequences, "eval_starts": args.eval_starts}


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop each epoch after N optimizer steps (smoke tests)")
    parser.add_argument("--dtype", default=None, help="mixed precision: bf16 (GPU default) or no (CPU default)")
    parser.add_argument("--init-head", default=None, metavar="HEAD",
                        help="start from this trained head's weights (folder or shipped alias) instead of a fresh "
                             "initialisation, e.g. to fine-tune a shipped head on new data; it must have the run's "
                             "method and shapes; its draft vocabulary is kept, or widened to --draft-vocab-size when that "
                             "differs (its own tokens plus this data's most frequent; jakiro.train.revocab)")
    parser.add_argument("--eval-only", action="store_true",
                        help="train nothing: write the held-out metrics of the --init-head head on this data's "
                             "held-out split to OUT/holdout_eval.json (compare heads on the same conversations)")
    parser.add_argument("--holdout-from", default=None, metavar="DATA",
                        help="hold out this data folder's held-out split instead of --data's own and train on all "
                             "the rest of --data: the held-out conversations stay fixed while the data grows "
                             "(--data a larger jakiro.ge_data.subset view of the same data)")


def training_job(args: argparse.Namespace, tau: TauSettings | None = None) -> TrainingJob:
    """The job of a parsed command line (``--data``, ``--base-model-path``, ``--out``, ``--resume`` and the job flags)."""
    return TrainingJob(args.data, args.base_model_path, Path(args.out), args.resume, args.dtype, args.max_steps, tau,
                       args.init_head, args.eval_only, args.holdout_from)
