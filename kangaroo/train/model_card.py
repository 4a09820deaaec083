"""A Kangaroo adapter's model card: what `python -m jakiro.train.model_card` writes for a ``kangaroo`` head.

The core card assumes an EAGLE-style head (experts, contrastive branch, chain accuracy per draft step);
an adapter is described by its exit layer, its drafting defaults (threshold, steps) and the held-out
numbers its training records (`kangaroo.train.metrics`): expected acceptance, top-1, and greedy rounds
replayed at the training-time threshold and steps. The data, epochs and MT-bench lines are the core's
(`jakiro.train.model_card`), so every card states them the same way. The registry entry
(`jakiro.methods.MethodSpec.model_card`) names `card_text`.
"""

from __future__ import annotations

import json
from pathlib import Path

from jakiro.ge_data.storage import read_manifest
from jakiro.train.model_card import data_line, epochs_line, measured_text, read_metrics

from ..model.config import DEFAULT_STEPS, DEFAULT_THRESHOLD

# TrainConfig fields only the EAGLE-style draft-head loss and its chain metric read: left out of the card's
# settings so it does not suggest the adapter trained with feature noise or a rollout.
DRAFT_HEAD_ONLY_SETTINGS = ("contrastive_weight", "eval_starts", "noise", "p_weight", "rollout_decay",
                            "rollout_steps", "rollout_steps_train", "v_weight")


def _number(value, spec: str) -> str:
    """``value`` formatted, or "n/a" where the held-out split had nothing to measure (a None metric)."""
    return "n/a" if value is None else format(value, spec)


def epoch_table(records: list[dict]) -> str:
    """One row per epoch: the training loss and the held-out numbers of `kangaroo.train.metrics`."""
    rows = [f"| {r['epoch']} | {r['train_tokens']} | {_number(r['train_loss'], '.3f')} | "
            f"{_number(r['holdout_loss'], '.3f')} | {_number(r['holdout_top1'], '.3f')} | "
            f"{_number(r['holdout_expected_acceptance'], '.3f')} | {_number(r['holdout_simulated_tau'], '.2f')} | "
            f"{_number(r['holdout_simulated_drafted'], '.2f')} |" for r in records]
    return ("| epoch | train tokens | train loss | held-out loss | held-out top-1 | held-out expected acceptance | "
            "simulated τ | drafted/round |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))


def card_text(head: Path, run: Path, data: Path, mt_bench: dict | None, device: str,
              choice_note: str | None = None) -> str:
    """The README.md of the adapter in ``head``, trained in ``run`` on ``data`` (arguments as the core's)."""
    config = json.loads((head / "config.json").read_text())
    records, _ = read_metrics(run)
    manifest = read_manifest(data)
    run_config = json.loads((run / "run_config.json").read_text())
    last = records[-1]
    exit_layer, layers = config["exit_layer"], config.get("base_num_layers")
    of_layers = f" of {layers}" if layers else ""
    deep = f"layers {exit_layer}..{layers - 1}" if layers else f"the layers from {exit_layer} on"
    vocabulary = (f"a draft vocabulary of {config['draft_vocab_size']} tokens" if config.get("draft_vocab_size")
                  else f"the full vocabulary of {config['vocab_size']} tokens")
    trained_threshold = run_config["draft"].get("threshold", DEFAULT_THRESHOLD)
    trained_steps = run_config["draft"].get("steps", DEFAULT_STEPS)
    settings = {k: v for k, v in run_config["train"].items() if k not in DRAFT_HEAD_ONLY_SETTINGS}
    answers = last.get("holdout_answers", "base model's own" if manifest.get("regenerate") else "from the data set")
    base = config["base_model"]
    note = choice_note.strip() if choice_note and choice_note.strip() else (
        "not recorded (write the card with `--choice-note TEXT`)")
    return f"""# {head.name}

A **Kangaroo** adapter for `{base}`. Drafts come from the base model's first {exit_layer}{of_layers} decoder
layers (exit layer {exit_layer}), then the adapter (one attention block + two RMSNorms, no MLP), then the base
model's own output head over {vocabulary}; verification runs only the deep {deep}
on the drafted tokens' shallow states. Load it with `EaModel.from_pretrained("{base}", "{head.name}")`.

## Training
{data_line(manifest)}
- Draft settings: {json.dumps(run_config['draft'], sort_keys=True)}
- Settings: {json.dumps(settings, sort_keys=True)}
- Loss: soft cross-entropy against the base model's next-token distribution (no training-time rollout).
{epochs_line(records, device)}

{epoch_table(records)}

Final held-out metrics ({last.get('holdout_positions', 'n/a')} positions, answers {answers}): top-1
{_number(last['holdout_top1'], '.3f')} (the adapter's greedy token equals the base model's), expected acceptance
{_number(last['holdout_expected_acceptance'], '.3f')} (mean of Σ_v min(p_v, q_v): the chance a token sampled from the
adapter is accepted at temperature 1), simulated τ {_number(last['holdout_simulated_tau'], '.2f')} tokens per round with
{_number(last['holdout_simulated_drafted'], '.2f')} drafted per round (greedy rounds replayed on the held-out answers at
threshold {trained_threshold:g}, steps {trained_steps}).

## Measured
{measured_text(mt_bench)}

## Drafting defaults
Saved in `config.json`: threshold **{config['threshold']:g}** (drafting stops after a token whose top probability is
below it; 0 = never early) and steps **{config['steps']}** (at most that many tokens drafted per round). Override
them without retraining: `EaModel.from_pretrained("{base}", "{head.name}", threshold=0.4, steps=4)`, or
`--threshold` / `--steps` on the Kangaroo evaluation commands (`python -m kangaroo.evaluation.gen_ea_answer`);
`python -m kangaroo.evaluation.replay` ranks (threshold, steps) offline on held-out data.

How these defaults were chosen: {note}
"""
