"""Kangaroo training end to end on a tiny model: train, export, load, lossless output, metrics, resume, refusals."""

from __future__ import annotations

import json

import pytest

import kangaroo.train.main as train_main
import kangaroo.train.recipe as recipe
from jakiro import EaModel
from kangaroo.model.drafter import KangarooDrafter
from kangaroo.train.metrics import replay_rounds
from tests.helpers.training import assert_greedy_matches_base, assert_same_weights, interrupted_on_call

TRAIN = ["--exit-layer", "1", "--epochs", "2", "--batch-size", "2", "--lr", "3e-3", "--warmup-steps", "2",
         "--max-len", "64"]


def train(data, base, out, *extra):
    train_main.main(["--data", str(data), "--base-model-path", str(base), "--out", str(out), *TRAIN, *extra])


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("variant", [[], ["--draft-vocab-size", "20", "--threshold", "0.2", "--steps", "3"]],
                         ids=["full-vocab", "draft-vocab"])
def test_train_export_load_and_stay_lossless(kangaroo_data, tiny_base_dir, tmp_path, variant):
    out = tmp_path / "run"
    train(kangaroo_data, tiny_base_dir, out, *variant)
    rows = records(out)
    assert [r["epoch"] for r in rows] == [0, 1]
    for row in rows:
        assert 0.0 <= row["holdout_expected_acceptance"] <= 1.0 and 0.0 <= row["holdout_top1"] <= 1.0
        assert row["holdout_positions"] > 0 and row["holdout_loss"] > 0
        assert 1.0 <= row["holdout_simulated_tau"] <= 1 + row["holdout_simulated_drafted"]
    config = json.loads((out / "head" / "config.json").read_text())
    assert config["method"] == "kangaroo" and config["exit_layer"] == 1
    if variant:
        assert config["draft_vocab_size"] == 20 and (config["threshold"], config["steps"]) == (0.2, 3)
    ea = EaModel.from_pretrained(str(tiny_base_dir), str(out / "head"))
    assert isinstance(ea.drafter, KangarooDrafter)
    assert_greedy_matches_base(ea, tiny_base_dir, ["write a short poem about the sea", "tell me a story"])


def test_training_improves_the_adapter(kangaroo_data, tiny_base_dir, tmp_path):
    out = tmp_path / "longer"
    train(kangaroo_data, tiny_base_dir, out, "--epochs", "6")
    rows = records(out)
    assert rows[-1]["holdout_loss"] < rows[0]["holdout_loss"]
    assert rows[-1]["holdout_expected_acceptance"] > rows[0]["holdout_expected_acceptance"]


def test_resume_after_interruption_gives_the_same_adapter(kangaroo_data, tiny_base_dir, tmp_path):
    straight = tmp_path / "straight"
    train(kangaroo_data, tiny_base_dir, straight)

    interrupted = tmp_path / "interrupted"
    # killed in the second epoch's held-out evaluation (after its training steps, before its checkpoint)
    with interrupted_on_call(recipe, "evaluate_adapter", 2), pytest.raises(KeyboardInterrupt):
        train(kangaroo_data, tiny_base_dir, interrupted)
    assert not (interrupted / "head").exists()
    train(kangaroo_data, tiny_base_dir, interrupted, "--resume")
    assert_same_weights(straight / "head", interrupted / "head")  # bit-identical
    assert [r["epoch"] for r in records(interrupted)] == [0, 1]


def test_refusals_are_one_line_errors(kangaroo_data, tiny_base_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # the data holds layer 1 only
        train(kangaroo_data, tiny_base_dir, tmp_path / "a", "--exit-layer", "2")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "hidden_state_layer2" in err and "--save-layers 2" in err and "Traceback" not in err
    out = tmp_path / "once"
    train(kangaroo_data, tiny_base_dir, out, "--epochs", "1")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train(kangaroo_data, tiny_base_dir, out, "--epochs", "1")
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(kangaroo_data, tiny_base_dir, out, "--epochs", "1", "--resume", "--threshold", "0.9")
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(kangaroo_data, tiny_base_dir, tmp_path / "b", "--steps", "0")
    assert "steps must be an integer >= 1" in capsys.readouterr().err


def test_core_entry_point_with_method_flag_trains_the_same_adapter(kangaroo_data, tiny_base_dir, tmp_path, capsys):
    """`jakiro.train.main --method kangaroo` runs the same recipe through the same loop as kangaroo.train.main."""
    import jakiro.train.main as core_main

    straight = tmp_path / "kangaroo"
    train(kangaroo_data, tiny_base_dir, straight)
    config = tmp_path / "exit1.json"
    config.write_text(json.dumps({"draft": {"exit_layer": 1}}))
    core = tmp_path / "core"
    flags = [flag for flag in TRAIN if flag not in ("--exit-layer", "1")]
    core_main.main(["--data", str(kangaroo_data), "--base-model-path", str(tiny_base_dir), "--out", str(core), *flags,
                    "--method", "kangaroo", "--config", str(config)])
    assert "τ by tree size is not measured for this adapter" in capsys.readouterr().out
    assert_same_weights(straight / "head", core / "head")
    assert records(core) == [dict(row, epoch_seconds=mine["epoch_seconds"],
                                  train_tokens_per_second=mine["train_tokens_per_second"])
                             for row, mine in zip(records(straight), records(core))]
    with pytest.raises(SystemExit) as exit_info:
        core_main.main(["--data", str(kangaroo_data), "--base-model-path", str(tiny_base_dir), "--out",
                        str(tmp_path / "never"), "--method", "kangaroo", "--rollout-steps", "2"])
    assert exit_info.value.code == 2 and "without training-time rollout" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("matches,confidences,threshold,steps,expected", [
    # every draft right and confident: rounds of steps drafts + 1
    ([True] * 8, [0.9] * 8, 0.5, 3, (2, 8, 6)),
    # a mismatch at position 1: round 1 accepts 1 (+1), round 2 restarts at position 2 and is cut by the end
    ([True, False, True, True], [0.9] * 4, 0.5, 3, (2, 4, 5)),
    # low confidence stops the first round after one draft
    ([True, True, True, True], [0.2, 0.9, 0.9, 0.9], 0.5, 3, (2, 4, 3)),
    ([False, False], [0.9, 0.9], 0.5, 3, (2, 2, 3)),
])
def test_replay_rounds(matches, confidences, threshold, steps, expected):
    assert replay_rounds(matches, confidences, threshold, steps) == expected
