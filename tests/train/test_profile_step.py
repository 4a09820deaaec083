"""The training-step profiler runs on real data and on random features, and accounts for the whole step."""

from __future__ import annotations

import json

import pytest

from jakiro.train.profile_step import main as profile


@pytest.mark.parametrize("source", ["random", "data"])
def test_profile_reports_tokens_per_second_and_shares(tiny_data, tiny_base_dir, tmp_path, capsys, source):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"draft": {"num_experts": 2}, "train": {"noise": 0.2}}))
    args = ["--base-model-path", str(tiny_base_dir), "--config", str(config), "--batch-size", "2", "--seq-len", "16",
            "--steps", "2", "--rollout-steps", "2", "--ops", "3"]
    if source == "data":
        args += ["--data", str(tiny_data)]
    profile(args)
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[0])
    assert result["tokens_per_second"] > 0 and result["shape"]["rollout_steps"] == 2
    assert result["shape"]["data"] == ("folder" if source == "data" else "random")
    assert sum(result["share"].values()) == pytest.approx(1.0, abs=0.01)
    assert "Self CPU" in out  # the operator table
