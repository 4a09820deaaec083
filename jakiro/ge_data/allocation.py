"""Generate draft-head training data: `python -m jakiro.ge_data.allocation --help`.

Splits the conversations into shards, hands shards to one worker per GPU (``--gpus 0,1``) or to
``--num-workers`` CPU processes, and keeps the manifest listing every finished shard (rewritten as
shards land, marked complete when all are done). Rerunning the same command resumes: finished shards
are skipped; stopping it (Ctrl-C, SIGTERM) stops its workers and keeps what they finished. Data made with another base model is refused.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..base_models import DEFAULT_BASE_MODEL, resolve_base_model_path, same_base_model
from ..commands import exit_on_error
from ..errors import ConfigError
from ..files import file_sha256, write_json_atomic
from ..model.configs import base_fingerprint
from ..templates import TEMPLATES
from ..version import __version__
from .conversations import describe_skipped, read_conversations
from .storage import MANIFEST, list_shards, parse_shard_ranges, read_manifest, shard_name
from .worker import run_worker

PLAN = "plan.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.ge_data.allocation",
                                     description="Generate training data (tokens, loss masks, base-model features).")
    parser.add_argument("--data-path", required=True, help="ShareGPT conversations: a JSON list or JSONL file")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--outdir", required=True, help="output folder (shards + manifest.json)")
    parser.add_argument("--max-samples", type=int, default=None, help="use the first N conversations (after shuffling)")
    parser.add_argument("--max-length", type=int, default=2048, help="truncate conversations to this many tokens")
    parser.add_argument("--chat-template", default=None, choices=TEMPLATES,
                        help="default: the tokenizer's own chat template")
    parser.add_argument("--save-layers", default="", help="extra hidden layers to save, e.g. '2' or '2,3' (Kangaroo)")
    parser.add_argument("--regenerate", action="store_true",
                        help="replace assistant turns with the base model's own answers (fills prompt-only items too)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="reply length cap with --regenerate")
    parser.add_argument("--max-turns", type=int, default=4, help="user turns answered per conversation with --regenerate")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature with --regenerate (0 = greedy)")
    parser.add_argument("--batch-size", type=int, default=16, help="generation batch size with --regenerate")
    parser.add_argument("--tokens-per-batch", type=int, default=8192, help="feature-extraction batch size in tokens")
    parser.add_argument("--shard-size", type=int, default=64, help="conversations per shard (the unit of resume)")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU ids, one worker each (e.g. 0,1,2,3)")
    parser.add_argument("--num-workers", type=int, default=1, help="CPU worker processes (without --gpus)")
    parser.add_argument("--only-shards", default=None, metavar="RANGES",
                        help="process only these shards of the plan, e.g. '0-3,7' (a fresh machine recomputes the "
                             "features of the part it trains on first; rerun without it for the rest)")
    parser.add_argument("--dtype", default=None, help="model dtype (default fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed for choosing conversations")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip unusable items instead of failing: JSONL lines that are not valid JSON (or not "
                             "UTF-8), items that are not ShareGPT conversations, conversations with no user turn "
                             "(a .json list must still parse as a whole); the skipped items are listed by reason")
    return parser


def make_plan(args: argparse.Namespace) -> dict:
    from transformers import AutoConfig

    folder = resolve_base_model_path(args.base_model_path)
    fingerprint = base_fingerprint(AutoConfig.from_pretrained(folder, local_files_only=True))
    loaded = read_conversations(args.data_path, skip_invalid=args.skip_invalid)
    conversations = loaded.conversations
    order = torch.randperm(len(conversations), generator=torch.Generator().manual_seed(args.seed)).tolist()
    count = min(args.max_samples or len(conversations), len(conversations))
    save_layers = sorted({int(x) for x in args.save_layers.split(",") if x.strip()})
    for name, value in (("--max-length", args.max_length), ("--shard-size", args.shard_size),
                        ("--max-new-tokens", args.max_new_tokens), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if args.regenerate and args.max_new_tokens >= args.max_length:
        raise ConfigError("--max-new-tokens must be smaller than --max-length")
    return {
        "format_version": 1, "library_version": __version__, "outdir": str(Path(args.outdir).resolve()),
        "data_path": str(Path(args.data_path).resolve()), "data_sha256": file_sha256(args.data_path)[:16],
        "base_model": str(args.base_model_path), "base_model_path": folder, "base_fingerprint": fingerprint,
        "chat_template": args.chat_template, "max_length": args.max_length, "save_layers": save_layers,
        "regenerate": args.regenerate, "max_new_tokens": args.max_new_tokens, "max_turns": args.max_turns,
        "temperature": args.temperature, "batch_size": args.batch_size, "tokens_per_batch": args.tokens_per_batch,
        "shard_size": args.shard_size, "seed": args.seed, "skip_invalid": args.skip_invalid,
        "skipped_invalid": len(loaded.skipped), "skipped_invalid_by_reason": loaded.skipped_by_reason(),
        "skipped_invalid_items": describe_skipped(loaded.skipped),
        "selected_without_reply": sum(not conversations[i].has_reply for i in order[:count]),
        "num_conversations": count, "order": order[:count], "dtype": args.dtype,
        "num_shards": (count + args.shard_size - 1) // args.shard_size,
    }


def check_resume(plan: dict, outdir: Path) -> None:
    """Refuse to mix data made with another base model or other settings into one folder."""
    previous = outdir / PLAN
    if not previous.is_file():
        return
    import json

    old = json.loads(previous.read_text())
    if old.get("base_fingerprint") != plan["base_fingerprint"]:
        raise ConfigError(f"{outdir} holds data made with base model {old.get('base_model')!r}: use another --outdir")
    for key in ("data_sha256", "chat_template", "max_length", "save_layers", "regenerate", "shard_size", "seed",
                "num_conversations", "max_new_tokens", "temperature", "max_turns"):
        if old.get(key) != plan[key] and not (key == "num_conversations" and grows_plan(old, plan)):
            raise ConfigError(f"{outdir} was started with {key}={old.get(key)!r}, now {plan[key]!r}: "
                              "rerun with the same settings to resume, or use another --outdir")
    if old.get("num_conversations") != plan["num_conversations"]:
        print(f"growing {outdir.name}: {old['num_conversations']} -> {plan['num_conversations']} conversations "
              f"({old['num_shards']} -> {plan['num_shards']} shards); the shards already made stay as they are")


def grows_plan(old: dict, plan: dict) -> bool:
    """A larger --max-samples extends a plan without changing a shard already made.

    The order is one seeded permutation cut at --max-samples, so the old order is a prefix of the new; the old
    plan's shards keep their conversations only when its last shard was full."""
    count = old.get("num_conversations") or 0
    return (plan["num_conversations"] > count and count % plan["shard_size"] == 0
            and plan["order"][:count] == old.get("order"))


def warn_other_base_name(outdir: Path, plan: dict) -> None:
    """Data of an earlier run for a base model of another name but the same architecture: accepted, said aloud.

    The folder keeps the name it was started for, so every later run with another name warns again."""
    import json

    for name in (MANIFEST, PLAN):
        path = outdir / name
        if path.is_file():
            old = json.loads(path.read_text()).get("base_model")
            if old is not None and not same_base_model(old, plan["base_model"]):
                print(f"warning: {outdir} holds data made for base model {old!r}, and {plan['base_model']!r} has the "
                      "same architecture: resuming, but the new shards hold the hidden states of "
                      f"{plan['base_model']!r}; use another --outdir unless both names are the same weights",
                      file=sys.stderr)
                plan["base_model"] = old
            return


def shard_skip_reasons(outdir: Path) -> dict[str, int] | None:
    """Skip counts the worker recorded per shard (metadata ``skipped``: JSON reason -> count), or None if any
    shard has none (then `skip_summary` infers them)."""
    import json

    from safetensors import safe_open

    reasons: dict[str, int] = {}
    for shard in list_shards(outdir):
        with safe_open(str(shard.path), framework="pt") as handle:
            recorded = (handle.metadata() or {}).get("skipped")
        if recorded is None:
            return None
        for reason, count in json.loads(recorded).items():
            reasons[reason] = reasons.get(reason, 0) + int(count)
    return reasons


def skip_summary(plan: dict, manifest: dict, outdir: Path) -> str | None:
    """``skipped 3 of 12 selected conversations: 2 without an assistant reply, 1 ...`` (None if none was)."""
    selected, written = plan["num_conversations"], manifest["conversations"]
    if written >= selected:
        return None
    reasons = {k: v for k, v in (shard_skip_reasons(outdir) or {}).items() if v}
    if not reasons:
        if not plan["regenerate"] and plan.get("selected_without_reply"):
            reasons["without an assistant reply (pass --regenerate to answer them)"] = plan["selected_without_reply"]
        rest = selected - written - sum(reasons.values())
        if rest > 0:
            key = (f"with no answer token left within --max-length {plan['max_length']} (the base model's answer "
                   f"was empty, or the prompt longer than --max-length minus --max-new-tokens)" if plan["regenerate"]
                   else f"with no assistant token within --max-length {plan['max_length']}")
            reasons[key] = rest
    return (f"skipped {selected - written} of {selected} selected conversations: "
            + ", ".join(f"{count} {reason}" for reason, count in reasons.items()))


def write_manifest(plan: dict, outdir: Path, complete: bool = True) -> dict:
    shards = list_shards(outdir)
    conversations = sum(len(s) for s in shards)
    tokens = sum(int(s.offsets[-1]) for s in shards)
    manifest = {key: plan[key] for key in ("format_version", "library_version", "base_model", "base_fingerprint",
                                           "chat_template", "max_length", "save_layers", "regenerate",
                                           "max_new_tokens", "temperature", "data_sha256", "seed")}
    manifest.update({"data_path": plan["data_path"], "shards": [s.path.name for s in shards],
                     "conversations": conversations, "tokens": tokens, "torch_version": torch.__version__,
                     "complete": complete, "planned_shards": plan["num_shards"]})
    write_json_atomic(outdir / MANIFEST, manifest, sort_keys=True)
    return manifest


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def wait_for_workers(processes: list[subprocess.Popen], outdir: Path, on_shard: Callable[[], object],
                     poll_seconds: float = 5.0) -> None:
    """Wait for the worker processes, calling ``on_shard`` whenever the number of finished shards changes.

    Workers only write whole shards, so rewriting the manifest as they land keeps it true at every moment: a
    run stopped half-way leaves a manifest that lists what is already usable (``jakiro.ge_data.subset`` reads
    it). Ctrl-C or SIGTERM stops the workers too, rather than leaving them running orphaned.
    """
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = True
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signal handling to the caller
        in_main_thread = False
    seen = len(list(outdir.glob("shard_*.safetensors")))
    try:
        while any(p.poll() is None for p in processes):
            time.sleep(poll_seconds)
            count = len(list(outdir.glob("shard_*.safetensors")))
            if count != seen:
                seen = count
                on_shard()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait()
        if len(list(outdir.glob("shard_*.safetensors"))) != seen:
            on_shard()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict:
    outdir = Path(args.outdir)
    if (outdir / MANIFEST).is_file():
        existing = read_manifest(outdir)
        from transformers import AutoConfig

        folder = resolve_base_model_path(args.base_model_path)
        if existing.get("base_fingerprint") != base_fingerprint(AutoConfig.from_pretrained(folder, local_files_only=True)):
            raise ConfigError(f"{outdir} holds data made with base model {existing.get('base_model')!r}: use another --outdir")
    plan = make_plan(args)
    if plan["skipped_invalid"]:
        print(f"skipped {plan['skipped_invalid']} unusable item(s) of {Path(args.data_path).name} (--skip-invalid): "
              f"{plan['skipped_invalid_items']}")
    outdir.mkdir(parents=True, exist_ok=True)
    check_resume(plan, outdir)
    warn_other_base_name(outdir, plan)
    write_json_atomic(outdir / PLAN, plan, sort_keys=True)
    only = parse_shard_ranges(args.only_shards) if args.only_shards else None
    if only and only[-1] >= plan["num_shards"]:
        raise ConfigError(f"--only-shards {args.only_shards}: the plan has shards 0-{plan['num_shards'] - 1} only")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    workers = len(gpus) or max(1, args.num_workers)
    if workers == 1:
        run_worker(plan, 0, 1, device=f"cuda:{gpus[0]}" if gpus else None,
                   on_shard=lambda: write_manifest(plan, outdir, complete=False), only_shards=only)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        plan["threads_per_worker"] = None if gpus else threads
        write_json_atomic(outdir / PLAN, plan, sort_keys=True)
        processes = []
        for index in range(workers):
            env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
            command = [sys.executable, "-m", "jakiro.ge_data.worker", "--plan", str(outdir / PLAN),
                       "--worker", str(index), "--num-workers", str(workers)]
            if only:
                command += ["--only-shards", args.only_shards]
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[index]
                command += ["--device", "cuda"]
            processes.append(subprocess.Popen(command, env=env))
        wait_for_workers(processes, outdir, lambda: write_manifest(plan, outdir, complete=False))
        failed = [p.args for p in processes if p.returncode != 0]
        if failed:
            raise ConfigError(f"{len(failed)} worker(s) failed (see their output above); rerun the same command to resume")
    everything = only is None or all((outdir / shard_name(i)).exists() for i in range(plan["num_shards"]))
    manifest = write_manifest(plan, outdir, complete=everything)
    print(f"wrote {manifest['conversations']} conversations, {manifest['tokens']} tokens, "
          f"{len(manifest['shards'])} shards to {outdir}")
    summary = skip_summary(plan, manifest, outdir) if everything else None
    if summary:
        print(summary)
    return manifest


def main(argv: list[str] | None = None) -> None:
    try:
        exit_on_error(build_parser(), run, argv)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finished shards are on disk and listed in the manifest
        print("interrupted: every finished shard is kept (see manifest.json); rerun the same command to resume",
              file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
