"""The Kangaroo adapter's model card, written by the one card command from a tiny adapter's real training run."""

from __future__ import annotations

import json

import pytest

import kangaroo.train.main as train_main
from jakiro.train.model_card import main as write_card
from kangaroo.train.model_card import epoch_table

TRAIN = ["--exit-layer", "1", "--epochs", "2", "--batch-size", "2", "--lr", "3e-3", "--warmup-steps", "2",
         "--max-len", "64", "--threshold", "0.3", "--steps", "3", "--draft-vocab-size", "20"]
NOTE = "threshold 0.3, steps 3: best estimated speedup of kangaroo.evaluation.replay on 64 held-out conversations"


@pytest.fixture(scope="module")
def trained(kangaroo_data, tiny_base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("kangaroo-card") / "run"
    train_main.main(["--data", str(kangaroo_data), "--base-model-path", str(tiny_base_dir), "--out", str(out), *TRAIN])
    return out


def card(run, data, *extra) -> str:
    write_card(["--head", str(run / "head"), "--run", str(run), "--data", str(data), "--device", "CPU (test)", *extra])
    return (run / "head" / "README.md").read_text()


def test_card_describes_the_adapter_its_training_and_defaults(trained, kangaroo_data, tiny_base_dir):
    text = card(trained, kangaroo_data)
    config = json.loads((trained / "head" / "config.json").read_text())
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    manifest = json.loads((kangaroo_data / "manifest.json").read_text())
    assert text.startswith("# head\n\nA **Kangaroo** adapter for ")
    assert f"first 1 of {config['base_num_layers']} decoder\nlayers (exit layer 1)" in text
    assert "one attention block + two RMSNorms" in text and "a draft vocabulary of 20 tokens" in text
    assert "num_experts" not in text and "chain accuracy" not in text  # nothing of the EAGLE-style card
    assert f"{manifest['tokens']} tokens" in text and "Epochs: 2; wall time" in text and "on CPU (test)" in text
    assert '"noise"' not in text and '"lr": 0.003' in text  # the draft-head-only settings are left out
    header = ("| epoch | train tokens | train loss | held-out loss | held-out top-1 | held-out expected acceptance | "
              "simulated τ | drafted/round |")
    assert header in text
    for row in rows:
        assert (f"| {row['epoch']} | {row['train_tokens']} | {row['train_loss']:.3f} | {row['holdout_loss']:.3f} | "
                f"{row['holdout_top1']:.3f} | {row['holdout_expected_acceptance']:.3f} | "
                f"{row['holdout_simulated_tau']:.2f} | {row['holdout_simulated_drafted']:.2f} |") in text
    last = rows[-1]
    assert f"expected acceptance\n{last['holdout_expected_acceptance']:.3f}" in text
    assert f"({last['holdout_positions']} positions" in text and "threshold 0.3, steps 3)." in text
    assert "## Drafting defaults\nSaved in `config.json`: threshold **0.3**" in text and "steps **3**" in text
    assert "threshold=0.4, steps=4" in text and "kangaroo.evaluation.replay" in text
    assert text.endswith("How these defaults were chosen: not recorded (write the card with `--choice-note TEXT`)\n")
    assert "## Measured\nnot measured yet" in text


def test_choice_note_and_measurement_appear(trained, kangaroo_data):
    text = card(trained, kangaroo_data, "--choice-note", NOTE, "--mt-bench-tau", "1.4", "--mt-bench-settings",
                "threshold 0.3, steps 3", "--mt-bench-source", "answers.jsonl")
    assert text.endswith(f"How these defaults were chosen: {NOTE}\n")
    assert "τ = **1.40** tokens per verification round" in text and "answers.jsonl" in text


def test_card_shows_current_defaults_beside_the_training_time_ones(trained, kangaroo_data, tmp_path):
    """Defaults changed after training (from a replay, say): the card states both, each where it applies."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("checkpoints"))
    config_path = run / "head" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "threshold": 0.5, "steps": 4}))
    text = card(run, kangaroo_data)
    assert "threshold **0.5**" in text and "steps **4**" in text and "threshold 0.3, steps 3)." in text


def test_epoch_table_marks_unmeasured_metrics():
    row = {"epoch": 0, "train_tokens": 10, "train_loss": 2.0, "holdout_loss": None, "holdout_top1": None,
           "holdout_expected_acceptance": None, "holdout_simulated_tau": None, "holdout_simulated_drafted": None}
    assert epoch_table([row]).endswith("| 0 | 10 | 2.000 | n/a | n/a | n/a | n/a | n/a |")
