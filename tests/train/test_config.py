"""Training options are checked before anything is written: one line naming the option, no run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jakiro.train.main as train_main
from jakiro.errors import ConfigError
from jakiro.train.config import load_run_config

CONFIGS = sorted((Path(train_main.__file__).parent / "configs").glob("*.json"))


@pytest.mark.parametrize("option, message", [
    (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
    (["--lr", "nan"], "--lr must be a number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a number > 0, got inf"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--epochs", "0"], "--epochs must be an integer >= 1 (0 epochs would export an untrained head), got 0"),
    (["--grad-accum", "0"], "--grad-accum must be an integer >= 1, got 0"),
    (["--warmup-steps", "-5"], "--warmup-steps must be an integer >= 0, got -5"),
    (["--max-len", "1"], "--max-len must be an integer >= 2, got 1"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--answer-start-weight", "0.5"], "--answer-start-weight must be a number >= 1 (1: no extra weight), got 0.5"),
    (["--answer-start-tokens", "0"], "--answer-start-tokens must be an integer >= 1, got 0"),
    (["--contrastive-weight", "1.5"], "--contrastive-weight must be a number in [0, 1], got 1.5"),
])
def test_bad_options_are_refused_before_anything_is_written(tiny_data, tiny_base_dir, tmp_path, capsys, option,
                                                           message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(out),
                         "--epochs", "1", *option])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err == [f"error: {message}"]
    assert not out.exists()  # no run_config.json, no checkpoint, no head


@pytest.mark.parametrize("train, message", [
    ({"noise": -0.1}, "train.noise in {path} must be a number >= 0, got -0.1"),
    ({"lr": "fast"}, "train.lr in {path} must be a number > 0, got 'fast'"),
    ({"epochs": 2.5}, "train.epochs in {path} must be an integer >= 1"),
    ({"epochs": True}, "train.epochs in {path} must be an integer >= 1"),
    ({"holdout_fraction": 1.0}, "train.holdout_fraction in {path} must be a number in (0, 1), got 1.0"),
    ({"betas": [0.9, 1.5]}, "train.betas in {path} must be two numbers in [0, 1), got [0.9, 1.5]"),
    ({"betas": 0.9}, "train.betas in {path} must be two numbers in [0, 1), got 0.9"),
    ({"v_weight": 0, "p_weight": 0}, "nothing would be trained"),
])
def test_bad_config_file_entries_are_named(tmp_path, train, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"draft": {}, "train": train}))
    with pytest.raises(ConfigError) as error:
        load_run_config(path, {})
    assert message.format(path=path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_pass(config):
    assert load_run_config(config, {}).train.epochs >= 1


@pytest.mark.parametrize("flags, expected", [([], 0.5), (["--contrastive-weight", "0.2"], 0.2)])
def test_contrastive_weight_flag_sets_the_loss_share(tiny_data, flags, expected):
    args = train_main.build_parser().parse_args(["--data", str(tiny_data), "--out", "unused", *flags])
    assert train_main.resolve_run(args).train.contrastive_weight == expected
