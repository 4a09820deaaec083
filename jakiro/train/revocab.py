"""Give a trained head a new draft vocabulary without retraining it: `python -m jakiro.train.revocab --help`.

A head drafts over ``d2t``, a subset of the base model's vocabulary, scored by the base model's own output
head (shared, never trained). So the vocabulary is not part of what the head learned: it can be re-chosen
after training, and the head then drafts tokens it could never propose before. That matters because a
vocabulary picked from an early, small slice of the data keeps fitting the later data worse: the shipped
SmolLM2 heads' 8,192 tokens, chosen from their first 18 shards, cover 92.7% of the assistant tokens of the
later shards; the same number re-chosen from those shards covers 96.7%, and 16,384 cover 99.3%. Every
token outside the vocabulary is a certain miss for the draft, whatever the head predicts.

The head's own tokens stay when the new vocabulary is at least as large (it loses nothing it drafted
before); the rest are the data's most frequent assistant tokens. Verification never reads the vocabulary,
so any choice stays exact. `jakiro.train.main --init-head HEAD --draft-vocab-size N` applies the same rule
when a fine-tuning run asks for another size than the head's.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ..commands import exit_on_error
from ..errors import ConfigError
from ..heads import resolve_head_path, stored_float_dtype
from ..methods import load_head
from .dataset import draft_vocabulary, token_frequencies


def coverage(counts: torch.Tensor, ids: torch.Tensor | None) -> float:
    """Share of the counted tokens that ``ids`` holds (1.0 for the full vocabulary, ``ids`` None)."""
    total = float(counts.sum())
    if ids is None or total == 0:
        return 1.0
    return float(counts[ids.long()].sum()) / total


def set_draft_vocabulary(head: torch.nn.Module, ids: torch.Tensor) -> torch.nn.Module:
    """Make ``ids`` (target token ids, id order) ``head``'s draft vocabulary in place; returns the head."""
    old = getattr(head, "d2t", None)
    dtype = old.dtype if old is not None else torch.long
    head.config = dataclasses.replace(head.config, draft_vocab_size=len(ids))
    if "d2t" in head._buffers:
        head._buffers["d2t"] = ids.to(dtype).clone()
    else:  # a full-vocabulary head has no d2t buffer yet
        if hasattr(head, "d2t"):
            delattr(head, "d2t")
        head.register_buffer("d2t", ids.to(dtype).clone(), persistent=True)
    if getattr(head, "full_head_weight", None) is not None:
        head.refresh_head()
    return head


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.revocab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", required=True, help="a trained head folder (RUN/head) or shipped alias, any method")
    parser.add_argument("--data", required=True,
                        help="data folder (jakiro.ge_data.allocation) whose assistant tokens are counted")
    parser.add_argument("--draft-vocab-size", type=int, required=True,
                        help="tokens in the new draft vocabulary (e.g. 16384)")
    parser.add_argument("--out", required=True, help="folder for the head with its new vocabulary")
    return parser


def run(args: argparse.Namespace) -> Path:
    folder = Path(resolve_head_path(args.head))
    head = load_head(folder)
    counts = token_frequencies(args.data, head.config.vocab_size)
    if counts.sum() == 0:
        raise ConfigError(f"--data {args.data!r} has no assistant tokens to count: pass a data folder written by "
                          "jakiro.ge_data.allocation")
    old = getattr(head, "d2t", None)
    ids = draft_vocabulary(counts, args.draft_vocab_size, keep=old)
    before, after = coverage(counts, old), coverage(counts, ids)
    set_draft_vocabulary(head, ids)
    out = Path(args.out)
    head.save_pretrained(out, dtype=stored_float_dtype(folder))
    size = len(old) if old is not None else head.config.vocab_size
    print(f"wrote {out}: draft vocabulary {size} -> {len(ids)} tokens, covering {before:.1%} -> {after:.1%} of "
          f"the data's assistant tokens (weights unchanged; fine-tune it with --init-head {out} "
          f"--draft-vocab-size {len(ids)})")
    return out


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), run, argv)


if __name__ == "__main__":
    main()
