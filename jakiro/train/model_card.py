"""Write a head's model card from its training run: `python -m jakiro.train.model_card --help`.

The card states what the head was trained on and how, and what it measured: data, token count,
epochs, wall time, device, the last held-out metrics, and (when given) the mean acceptance length
measured on MT-bench.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from ..ge_data.storage import read_manifest


def card_text(head: Path, run: Path, data: Path, mt_bench: dict | None, device: str) -> str:
    config = json.loads((head / "config.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    manifest = read_manifest(data)
    run_config = json.loads((run / "run_config.json").read_text())
    last = records[-1]
    hours = sum(r["epoch_seconds"] for r in records) / 3600
    curve = "\n".join(
        f"| {r['epoch']} | {r['train_tokens']} | {r['train_loss']:.3f} | {r['holdout_loss']:.3f} | "
        f"{r['holdout_top1']:.3f} | {r['holdout_simulated_accept_length']:.2f} |" for r in records)
    measured = "not measured yet"
    if mt_bench:
        measured = (f"τ = **{mt_bench['tau']:.2f}** tokens per verification round on all 80 MT-bench questions at "
                    f"temperature 0 ({mt_bench['settings']}; {mt_bench['source']})")
    return f"""# {head.name}

A **{config['method']}** draft head for `{config['base_model']}` ({config['num_experts']} expert(s),
contrastive branch: {config['contrastive']}, draft vocabulary: {config['draft_vocab_size'] or config['vocab_size']}
tokens). Load it with `EaModel.from_pretrained("{config['base_model']}", "{head.name}")`.

## Training
- Data: `{Path(manifest['data_path']).name}` (sha256 {manifest['data_sha256']}), {manifest['conversations']}
  conversations, {manifest['tokens']} tokens, max length {manifest['max_length']}, chat template:
  {manifest['chat_template'] or "the tokenizer's own"}, regenerated answers: {manifest['regenerate']}.
- Settings: {json.dumps(run_config['train'], sort_keys=True)}
- Epochs: {len(records)}; wall time {hours:.2f} h on {device}; torch {torch.__version__}, Python {platform.python_version()}.

| epoch | train tokens | train loss | held-out loss | held-out top-1 | simulated τ (chain) |
| --- | --- | --- | --- | --- | --- |
{curve}

Final held-out metrics: top-1 {last['holdout_top1']:.3f}, per-step rollout accuracy
{[round(a, 3) for a in last['holdout_acc_per_step']]}, simulated chain acceptance length
{last['holdout_simulated_accept_length']:.2f}.

## Measured
{measured}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.model_card", description=__doc__.splitlines()[0])
    parser.add_argument("--head", required=True, help="exported head folder (gets README.md)")
    parser.add_argument("--run", required=True, help="training output folder (metrics.jsonl, run_config.json)")
    parser.add_argument("--data", required=True, help="training data folder (manifest.json)")
    parser.add_argument("--mt-bench-tau", type=float, default=None, help="measured mean acceptance length, T=0")
    parser.add_argument("--mt-bench-settings", default="", help="tree settings of that measurement")
    parser.add_argument("--mt-bench-source", default="", help="result file of that measurement")
    parser.add_argument("--device", default=f"CPU ({platform.processor() or platform.machine()})")
    args = parser.parse_args(argv)
    measured = None
    if args.mt_bench_tau is not None:
        measured = {"tau": args.mt_bench_tau, "settings": args.mt_bench_settings, "source": args.mt_bench_source}
    head = Path(args.head)
    text = card_text(head, Path(args.run), Path(args.data), measured, args.device)
    (head / "README.md").write_text(text)
    print(f"wrote {head / 'README.md'}")


if __name__ == "__main__":
    main()
