"""Where a speculative round's time goes on this device: `python -m jakiro.evaluation.profile --help`.

Prints two tables and (with ``--json``) records them with the versions, dtype, device and threads:

1. The forward cost table: one target forward over a tree of k nodes after a ``--prefix``-token
   cache, for every k of ``--ks``, as the median ms and in plain-step units (a plain step = one token
   through the same model, timed in the same loop). Columns for the plain forward and, on CPU in fp32,
   the fast one (tree padded to k rows, panel-packed weights, LLaMA-style layers fused; `jakiro.model.fast_verify`).
2. The round breakdown for a real head on a real prompt: drafting, verification (the forward and the
   acceptance walk) and bookkeeping (KV commit, drafter update, emission) per round in plain steps,
   τ, and the speedup they imply, measured against plain decoding of the same prompt, interleaved.

    python -m jakiro.evaluation.profile --ea-model-path jakiro-smollm2-135m-instruct --json profile.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

from ..base_models import DEFAULT_BASE_MODEL
from ..errors import ConfigError
from .cli import device_map_for, dtype_name, run_main
from .tables import fmt, markdown_table

DEFAULT_KS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
DEFAULT_PROMPT = "Explain in three short paragraphs why the sky is blue."
DEFAULT_HEAD = "jakiro-smollm2-135m-instruct"
VARIANTS = {  # name -> (EaModel options, description)
    "now": ({}, "the defaults: fast verification forward and bf16 drafting where supported"),
    "before": ({"fast_verify": False, "draft_dtype": "float32"}, "plain forward, fp32 drafting"),
    "plain-verify": ({"fast_verify": False}, "plain verification forward only"),
    "fp32-draft": ({"draft_dtype": "float32"}, "fp32 drafting only"),
}


def parse_variants(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise ConfigError(f"--variants {text!r}: use some of {', '.join(VARIANTS)}")
    return names


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in str(text).split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"--ks must be comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--ks must be positive integers like 1,2,4,8, got {text!r}")
    return ks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.evaluation.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="base model folder or alias")
    parser.add_argument("--ea-model-path", default=DEFAULT_HEAD,
                        help=f"draft head for the round breakdown (folder or alias; default {DEFAULT_HEAD}); "
                             "'none' skips the breakdown")
    parser.add_argument("--dtype", default="auto", help="float32, float16 or bfloat16; auto = float32 on CPU")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a small machine more threads can be slower)")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="tree sizes of the cost table")
    parser.add_argument("--prefix", type=int, default=300, help="cached tokens before each timed forward")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per entry (medians; default 7)")
    parser.add_argument("--rounds", type=int, default=24,
                        help="speculative rounds timed per run of the breakdown (default 24)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of the breakdown (medians; default 3)")
    parser.add_argument("--total-token", type=int, default=8, help="tree budget of the breakdown, root included")
    parser.add_argument("--depth", type=int, default=5, help="draft depth of the breakdown")
    parser.add_argument("--top-k-tree", type=int, default=8, help="children per expanded node")
    parser.add_argument("--variants", default="now,before",
                        help="engine variants of the breakdown, interleaved: " + ", ".join(
                            f"{name} ({text})" for name, (_, text) in VARIANTS.items()) + " (default now,before)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the breakdown's user prompt")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results (and environment) here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def check_args(args: argparse.Namespace) -> tuple[int, ...]:
    ks = parse_ks(args.ks)
    parse_variants(args.variants)
    for name in ("threads", "repeats", "rounds", "runs", "depth", "top_k_tree"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.prefix < 1:
        raise ConfigError(f"--prefix must be >= 1, got {args.prefix}")
    if args.total_token < 2:
        raise ConfigError(f"--total-token must be >= 2 (root included), got {args.total_token}")
    from ..base_models import parse_dtype

    parse_dtype(args.dtype)
    return ks


def cost_rows(table) -> list[list[str]]:
    rows = []
    for e in table.entries:
        fast = "n/a" if e.fast_ms is None else f"{e.fast_ms:.1f}"
        rows.append([str(e.rows), f"{e.verify_ms:.1f}", fmt(e.verify_steps), fast, fmt(e.fast_steps),
                     {None: "n/a", True: "all rows", False: "per node"}[e.fast_eager], f"{e.step_ms:.1f}",
                     f"{e.head_row_ms:.1f}"])
    return rows


COST_HEADERS = ["k", "forward ms", "x step", "fast ms", "fast x step", "fast logits", "step ms", "head row ms"]


def _per_round(stats) -> dict:
    """One speculative run's per-round times (ms) from its `GenerationStats`."""
    rounds = max(stats.rounds, 1)
    loop = stats.wall_time - stats.prefill_time
    verify = stats.verify_time - stats.bookkeeping_time
    return {"rounds": stats.rounds, "tokens": sum(stats.accept_lengths), "round_ms": 1000 * loop / rounds,
            "draft_ms": 1000 * stats.draft_time / rounds, "verify_ms": 1000 * verify / rounds,
            "bookkeeping_ms": 1000 * (loop - stats.draft_time - verify) / rounds}


def measure_rounds(ea_models: dict, ids, rounds: int, runs: int, progress=None) -> dict:
    """Interleaved runs (each speculative variant, then plain decoding of as many tokens) on one prompt."""
    results: dict[str, list[dict]] = {name: [] for name in ea_models}
    steps: list[float] = []
    any_ea = next(iter(ea_models.values()))
    for ea in ea_models.values():  # untimed: packs the fast forward's weights, warms every path
        for _ in ea.ea_generate(ids, max_new_tokens=4):
            pass
    for _ in range(runs):
        produced = 0
        for name, ea in ea_models.items():
            for _ in ea.ea_generate(ids, max_new_tokens=rounds * (ea.depth + 2) + 1):
                if ea.last_stats.rounds >= rounds:
                    break
            produced = max(produced, ea.last_stats.new_tokens)
            results[name].append(_per_round(ea.last_stats) | {"tau": ea.last_stats.mean_accept_length})
        for _ in any_ea.naive_generate(ids, max_new_tokens=max(produced, 2)):
            pass
        plain = any_ea.last_stats
        steps.append(1000 * (plain.wall_time - plain.prefill_time) / max(plain.rounds, 1))
        if progress is not None:
            progress()
    step = statistics.median(steps)
    summary = {"step_ms": step, "step_ms_runs": steps}
    for name, per_run in results.items():
        med = {key: statistics.median(run[key] for run in per_run)
               for key in ("round_ms", "draft_ms", "verify_ms", "bookkeeping_ms")}
        tau = sum(r["tokens"] for r in per_run) / max(sum(r["rounds"] for r in per_run), 1)
        summary[name] = {**med, "tau": tau, "runs": per_run,
                         **{key.replace("_ms", "_steps"): value / step for key, value in med.items()},
                         "implied_speedup": tau * step / med["round_ms"]}
    return summary


def round_rows(summary: dict) -> list[list[str]]:
    rows = []
    for name, s in summary.items():
        if not isinstance(s, dict):
            continue
        rows.append([name, fmt(s["draft_steps"]), fmt(s["verify_steps"]), fmt(s["bookkeeping_steps"]),
                     fmt(s["round_steps"]), fmt(s["tau"]), fmt(s["implied_speedup"])])
    return rows


ROUND_HEADERS = ["variant", "draft", "verify", "bookkeeping", "round", "tau", "tau / round"]


def fast_kernel_info(base) -> dict:
    """Which products the fast forward used: the panel kernel (and its build) or MKL's packed weights, and
    whether its decoder layers ran fused."""
    from ..model.fast_verify import fast_verify_supported, shared_packed_linears

    if not fast_verify_supported(base):
        return {"fast_kernel": None}
    from ..model import panel_gemm

    from ..model.fused_decoder import shared_fused_decoder, unsupported_reason

    backend = shared_packed_linears(base).backend
    fused = backend == "panels" and shared_fused_decoder(base) is not None
    return {"fast_kernel": backend, "fast_kernel_build": panel_gemm.build_name() if backend == "panels" else None,
            "fast_kernel_error": panel_gemm.load_error(), "fused_layers": fused,
            "fused_layers_off_because": None if fused else (unsupported_reason(base) or "switched off")}


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..base_models import load_base_model
    from ..files import write_json_atomic
    from ..model.cost import measure_forward_costs
    from .environment import environment_info

    ks = check_args(args)
    torch.set_num_threads(args.threads)
    head = None if args.ea_model_path.lower() == "none" else args.ea_model_path
    if head is not None:
        from ..heads import resolve_head_path

        resolve_head_path(head)  # a missing head fails before the base model loads
    base, tokenizer = load_base_model(args.base_model_path, torch_dtype=args.dtype,
                                      device_map=device_map_for(args.device))
    device = base.get_output_embeddings().weight.device
    bar = tqdm(total=len(ks), desc="forward costs", unit="k", disable=args.no_progress, file=sys.stderr)
    table = measure_forward_costs(base, ks, prefix=args.prefix, repeats=args.repeats, progress=lambda _: bar.update())
    bar.close()
    print(f"## Forward cost (prefix {args.prefix} tokens, median of {args.repeats}, plain step "
          f"{table.entries[0].step_ms:.1f} ms)\n")
    print(markdown_table(COST_HEADERS, cost_rows(table)))
    result = {"kind": "jakiro-profile", "meta": {**environment_info(device), **fast_kernel_info(base)},
              "settings": {"base_model": str(args.base_model_path), "dtype": dtype_name(base.dtype),
                           "threads": args.threads, "ks": list(ks), "prefix": args.prefix, "repeats": args.repeats},
              "forward_costs": table.as_dict()}
    if head is not None:
        result["round_breakdown"] = breakdown(args, base, tokenizer, head)
    if args.json:
        write_json_atomic(args.json, result)
        print(f"written {args.json}", file=sys.stderr)
    return 0


def breakdown(args: argparse.Namespace, base, tokenizer, head: str) -> dict:
    import torch
    from tqdm import tqdm

    from ..chat import prompt_ids
    from ..model.ea_model import EaModel
    models = {name: EaModel.from_base_and_head(base, tokenizer, head, total_token=args.total_token,
                                               depth=args.depth, top_k=args.top_k_tree, **VARIANTS[name][0])
              for name in parse_variants(args.variants)}
    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": args.prompt}])])
    bar = tqdm(total=args.runs, desc="rounds", unit="run", disable=args.no_progress, file=sys.stderr)
    summary = measure_rounds(models, ids, args.rounds, args.runs, progress=bar.update)
    bar.close()
    print(f"\n## Round breakdown in plain steps ({head}, tree {args.total_token} nodes, depth {args.depth}, "
          f"top_k {args.top_k_tree}; {args.rounds} rounds x {args.runs} runs, "
          f"plain step {summary['step_ms']:.1f} ms)\n")
    print(markdown_table(ROUND_HEADERS, round_rows(summary)))
    variants = {name: {"options": VARIANTS[name][0], "fast_verify": ea.fast_verify,
                       "draft_dtype": str(getattr(ea.drafter, "draft_dtype", "n/a")).replace("torch.", "")}
                for name, ea in models.items()}
    return {"head": head, "total_token": args.total_token, "depth": args.depth, "top_k": args.top_k_tree,
            "rounds": args.rounds, "runs": args.runs, "prompt": args.prompt, "variants": variants, **summary}


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
