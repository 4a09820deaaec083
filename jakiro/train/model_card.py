"""Write a head's model card from its training run: `python -m jakiro.train.model_card --help`.

The card states what the head was trained on and how, and what it measured: data, token count,
epochs, wall time, device, the training-time rollout steps, the last held-out metrics (top-1 and chain
accuracy per draft step on held-out conversations), τ by tree size on held-out prompts measured with the
real engine (the last such record in ``metrics.jsonl``), and (when given) τ measured on MT-bench.
A method whose heads are not EAGLE-style (Kangaroo) writes its own card through the registry
(`jakiro.methods.model_card_writer`) from the shared pieces here; ``--choice-note`` adds a free-text
note (how the drafting settings were chosen, say) to any card.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from ..ge_data.storage import read_manifest
from ..methods import model_card_writer


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """The run's ``metrics.jsonl``: the per-epoch records and the τ-by-tree-size records."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in lines if "epoch" in r], [r for r in lines if "tau_by_tree_size" in r]


def data_line(manifest: dict) -> str:
    """The card's ``- Data:`` bullet (three lines): which data, how much, how it was made."""
    template = manifest["chat_template"] or "the tokenizer's own"
    return (f"- Data: `{Path(manifest['data_path']).name}` (sha256 {manifest['data_sha256']}), "
            f"{manifest['conversations']}\n  conversations, {manifest['tokens']} tokens, max length "
            f"{manifest['max_length']}, chat template:\n  {template}, regenerated answers: {manifest['regenerate']}.")


def holdout_line(records: list[dict]) -> str:
    """The card's ``- Held-out:`` bullet when the run held out another data view's split (``--holdout-from``), so a
    reader knows the held-out numbers are on the same conversations as the stages before it; empty otherwise."""
    source = records[-1].get("holdout_from")
    if not source:
        return ""
    return (f"- Held-out: the held-out split of the data view `{Path(source).name}` (`--holdout-from`), the same "
            "conversations earlier stages were measured on; training used every other conversation.\n")


def epochs_line(records: list[dict], device: str) -> str:
    """The card's ``- Epochs:`` bullet: epochs, summed wall time, device and versions."""
    hours = sum(r["epoch_seconds"] for r in records) / 3600
    return (f"- Epochs: {len(records)}; wall time {hours:.2f} h on {device}; torch {torch.__version__}, "
            f"Python {platform.python_version()}.")


def measured_text(mt_bench: dict | None) -> str:
    """The ``## Measured`` body: τ on MT-bench when given (``--mt-bench-tau``)."""
    if not mt_bench:
        return "not measured yet"
    return (f"τ = **{mt_bench['tau']:.2f}** tokens per verification round on all 80 MT-bench questions at "
            f"temperature 0 ({mt_bench['settings']}; {mt_bench['source']})")


def note_section(note: str | None, heading: str = "Notes") -> str:
    """``--choice-note`` as a closing section (empty without a note, so cards without one are unchanged)."""
    return f"\n## {heading}\n{note.strip()}\n" if note and note.strip() else ""


def card_text(head: Path, run: Path, data: Path, mt_bench: dict | None, device: str,
              choice_note: str | None = None) -> str:
    config = json.loads((head / "config.json").read_text())
    writer = model_card_writer(config.get("method"))
    if writer is not None:
        return writer(head, run, data, mt_bench, device, choice_note)
    records, taus = read_metrics(run)
    manifest = read_manifest(data)
    run_config = json.loads((run / "run_config.json").read_text())
    last = records[-1]
    curve = "\n".join(
        f"| {r['epoch']} | {r['train_tokens']} | {r['train_loss']:.3f} | {r['holdout_loss']:.3f} | "
        f"{r['holdout_top1']:.3f} | {r['holdout_simulated_accept_length']:.2f} |" for r in records)
    chain = last["holdout_acc_per_step"]
    chain_table = ("| draft step | " + " | ".join(str(i + 1) for i in range(len(chain))) + " |\n|" + " --- |" * (len(chain) + 1)
                   + "\n| chain accuracy | " + " | ".join(f"{a:.3f}" for a in chain) + " |")
    tau_text = tau_section(taus)
    rollout = run_config["train"].get("rollout_steps_train", 1)
    answers = records[-1].get("holdout_answers", "base model's own" if manifest.get("regenerate") else "from the data set")
    return f"""# {head.name}

A **{config['method']}** draft head for `{config['base_model']}` ({config['num_experts']} expert(s),
contrastive branch: {config['contrastive']}, draft vocabulary: {config['draft_vocab_size'] or config['vocab_size']}
tokens). Load it with `EaModel.from_pretrained("{config['base_model']}", "{head.name}")`.

## Training
{data_line(manifest)}
- Settings: {json.dumps(run_config['train'], sort_keys=True)}
- Training-time rollout: {rollout} step(s){" (the papers' recipe)" if rollout == 1 else
  f", loss weight {run_config['train'].get('rollout_decay', 0.8)}^(j-1) at step j"}.
{start_weight_line(run_config['train'])}{holdout_line(records)}- Initialisation: {f"the trained head `{records[0]['init_head']}` (fine-tuned here; `--init-head`)"
  if records[0].get('init_head') else "fresh"}.
{epochs_line(records, device)}

| epoch | train tokens | train loss | held-out loss | held-out top-1 | simulated τ (chain) |
| --- | --- | --- | --- | --- | --- |
{curve}

Final held-out metrics (answers {answers}): top-1 {last['holdout_top1']:.3f} (over the draft
vocabulary), simulated chain acceptance length {last['holdout_simulated_accept_length']:.2f}; chain accuracy
(steps 1..j all equal to the base model's greedy token):

{chain_table}

## τ by tree size (held-out prompts)
{tau_text}

## Measured
{measured_text(mt_bench)}
""" + note_section(choice_note)


def tau_section(taus: list[dict]) -> str:
    """One τ table per answer length measured (the last record of each; drafting without the contrastive level,
    and a base model in another dtype than float32, are tables of their own), shortest answers first: τ grows with
    how far into the answer the rounds run."""
    if not taus:
        return "not measured (train without `--tau-prompts 0` or run `python -m jakiro.train.measure_tau`)"
    latest: dict[tuple, dict] = {}
    for tau in taus:
        settings = tau["tau_settings"]
        dtype = settings.get("base_dtype", "float32")
        latest[(settings["max_new_tokens"], settings.get("cepd", True) is False, dtype != "float32", dtype)] = tau
    tables = []
    for (_, without_level, _, dtype), tau in sorted(latest.items()):
        sizes = list(tau["tau_by_tree_size"])
        settings = tau["tau_settings"]
        tables.append(f"Greedy, depth {settings['depth']}, top_k {settings['top_k']}, {settings['prompts']} held-out "
                      f"prompts, up to {settings['max_new_tokens']} new tokens each (stopping at the answer's end; "
                      "real engine, `EaModel`"
                      + (", drafting without the contrastive last level, `--no-cepd`" if without_level else "")
                      + (f", the base model in {dtype}, `--dtype {dtype}`" if dtype != "float32" else "")
                      + "):\n\n| tree nodes | " + " | ".join(sizes) + " |\n|" + " --- |" * (len(sizes) + 1) + "\n| τ | "
                      + " | ".join(f"{tau['tau_by_tree_size'][s]:.2f}" for s in sizes) + " |" + position_rows(tau, sizes))
    return "\n\n".join(tables)


def start_weight_line(train: dict) -> str:
    """The answer-start loss weighting, when the run used it (``--answer-start-weight``)."""
    weight = train.get("answer_start_weight", 1.0)
    if weight == 1.0:
        return ""
    tokens = train.get("answer_start_tokens", 64)
    return (f"- Answer-start weighting: an answer's token i weighs 1 + {weight - 1:g} · max(0, 1 − i/{tokens}) in the "
            "training loss (`--answer-start-weight`; held-out metrics unweighted).\n")


def position_rows(tau: dict, sizes: list[str]) -> str:
    """τ rows by where the round starts in the answer (`measure_tau` records them), and the answers' loops."""
    details = tau.get("tau_details", {})
    labels = []
    for size in sizes:
        for label in details.get(size, {}).get("tau_by_answer_position", {}):
            if label not in labels:
                labels.append(label)
    rows = ""
    for label in labels if len(labels) > 1 else ():  # one bucket would repeat the τ row
        cells = [details[s].get("tau_by_answer_position", {}).get(label) for s in sizes]
        rows += f"\n| τ, rounds from answer token {label} | " + " | ".join(
            f"{cell['tau']:.2f}" if cell else "" for cell in cells) + " |"
    if tau.get("repeated_4gram_fraction") is not None:
        rows += (f"\n\n{tau['repeated_4gram_fraction']:.0%} of the answer tokens close a 4-gram already in the same "
                 "answer (loops are easy to draft).")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.model_card", description=__doc__.splitlines()[0])
    parser.add_argument("--head", required=True, help="exported head folder (gets README.md)")
    parser.add_argument("--run", required=True, help="training output folder (metrics.jsonl, run_config.json)")
    parser.add_argument("--data", required=True, help="training data folder (manifest.json)")
    parser.add_argument("--mt-bench-tau", type=float, default=None, help="measured mean acceptance length, T=0")
    parser.add_argument("--mt-bench-settings", default="", help="tree settings of that measurement")
    parser.add_argument("--mt-bench-source", default="", help="result file of that measurement")
    parser.add_argument("--device", default=f"CPU ({platform.processor() or platform.machine()})")
    parser.add_argument("--choice-note", default=None,
                        help="free text added to the card (a Kangaroo card: under 'Drafting defaults'; else 'Notes'), "
                             "e.g. how threshold and steps were chosen with kangaroo.evaluation.replay")
    args = parser.parse_args(argv)
    measured = None
    if args.mt_bench_tau is not None:
        measured = {"tau": args.mt_bench_tau, "settings": args.mt_bench_settings, "source": args.mt_bench_source}
    head = Path(args.head)
    text = card_text(head, Path(args.run), Path(args.data), measured, args.device, args.choice_note)
    (head / "README.md").write_text(text)
    print(f"wrote {head / 'README.md'}")


if __name__ == "__main__":
    main()
