"""Choose threshold and steps offline: replay greedy Kangaroo rounds on held-out data for a grid of settings.

The adapter runs once over the held-out answers of a data folder (the same split training evaluates
on); for every (threshold, steps) the rounds are replayed from its top-1 matches and top
probabilities (`kangaroo.train.metrics`): τ (tokens per round) and drafted tokens per round. No
timing, so the result is deterministic and the CPU may be busy. Exact for data whose answers are the
base model's own greedy output (``--regenerate``), an approximation elsewhere. With the costs
measured once by `kangaroo.evaluation.sweep` (plain steps per drafted token, and per verification),
it also estimates the speedup ``τ / (verify_cost + draft_cost * drafted)``.

    python -m kangaroo.evaluation.replay --adapter runs/kangaroo/head --data data/smollm2-selfdistill \\
        --thresholds 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9 --steps 1,2,3,4,6,8 --draft-cost 0.15 --verify-cost 1.1
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence

from jakiro.base_models import DEFAULT_BASE_MODEL
from jakiro.commands import run_main
from jakiro.errors import ConfigError

from ..model.config import check_steps, check_threshold
from .sweep import parse_list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kangaroo.evaluation.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="Kangaroo adapter folder or alias")
    parser.add_argument("--data", required=True, help="data folder holding the adapter's exit layer (--save-layers)")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--steps", default="1,2,3,4,6,8")
    parser.add_argument("--holdout-fraction", type=float, default=0.05, help="as in training (default 0.05)")
    parser.add_argument("--sequences", type=int, default=64, help="held-out conversations to replay (default 64)")
    parser.add_argument("--draft-cost", type=float, default=None, help="plain steps per drafted token (from sweep)")
    parser.add_argument("--verify-cost", type=float, default=None, help="plain steps per verification (from sweep)")
    parser.add_argument("--output", default=None, help="also write the rows to this JSON file")
    return parser


def run(args: argparse.Namespace) -> int:
    from jakiro.base_models import load_base_model
    from jakiro.evaluation.tables import fmt, markdown_table
    from jakiro.files import write_json_atomic
    from jakiro.heads import resolve_head_path
    from jakiro.methods import load_head
    from jakiro.train.dataset import ShardDataset, check_data_matches_base, split_entries

    from ..train.losses import layer_key
    from ..train.recipe import check_data_has_layer
    from ..train.metrics import score_adapter

    thresholds = parse_list(args.thresholds, float, check_threshold, "thresholds")
    steps = parse_list(args.steps, int, check_steps, "steps")
    if args.sequences < 1 or not 0 < args.holdout_fraction < 1:
        raise ConfigError("--sequences must be >= 1 and --holdout-fraction in (0, 1)")
    if (args.draft_cost is None) != (args.verify_cost is None):
        raise ConfigError("pass both --draft-cost and --verify-cost (from the sweep) to estimate speedups, or neither")
    head = resolve_head_path(args.adapter)
    _, holdout, manifest = split_entries(args.data, args.holdout_fraction)
    base, _ = load_base_model(args.base_model_path, torch_dtype="float32")
    check_data_matches_base(manifest, base.config, args.data)
    adapter = load_head(head, base, expect_method="kangaroo", role="kangaroo.evaluation.replay")
    exit_layer = adapter.config.exit_layer
    check_data_has_layer(manifest, exit_layer, args.data)
    dataset = ShardDataset(holdout, 1 << 30, extra_keys=(layer_key(exit_layer),))
    samples = [dataset[i] for i in range(min(args.sequences, len(holdout)))]
    scores = score_adapter(adapter.float(), samples, exit_layer, base.device)
    rows = []
    for threshold, step in itertools.product(thresholds, steps):
        row = {"threshold": threshold, "steps": step, **scores.replay(threshold, step)}
        if args.draft_cost is not None and row["simulated_tau"]:
            row["estimated_speedup"] = row["simulated_tau"] / (args.verify_cost +
                                                               args.draft_cost * row["simulated_drafted"])
        rows.append(row)
    rows.sort(key=lambda r: -(r.get("estimated_speedup") or r["simulated_tau"] or 0.0))
    n = scores.positions
    print(f"adapter {args.adapter} (exit layer {exit_layer}) on {len(samples)} held-out conversations, "
          f"{int(n)} positions: top-1 {fmt(scores.top1 / n if n else None)}, "
          f"expected acceptance {fmt(scores.acceptance / n if n else None)}\n")
    headers = ["threshold", "steps", "tau (replayed)", "drafted/round"]
    if args.draft_cost is not None:
        headers.append("estimated speedup")
    print(markdown_table(headers, [[fmt(r["threshold"]), fmt(r["steps"]), fmt(r["simulated_tau"]),
                                    fmt(r["simulated_drafted"])] + ([fmt(r.get("estimated_speedup"))]
                                                                     if args.draft_cost is not None else [])
                                   for r in rows]))
    if args.output:
        write_json_atomic(args.output, {"adapter": str(args.adapter), "exit_layer": exit_layer,
                                        "sequences": len(samples), "positions": int(n), "rows": rows,
                                        "draft_cost": args.draft_cost, "verify_cost": args.verify_cost})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
