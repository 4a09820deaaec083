"""Offline replay of greedy rounds for a grid of thresholds and steps, on held-out data."""

from __future__ import annotations

import json

from jakiro import load_base_model
from kangaroo.evaluation import replay
from kangaroo.model.adapter import new_adapter


def test_replay_grid(kangaroo_data, tiny_base_dir, tmp_path, capsys):
    base, _ = load_base_model(str(tiny_base_dir), torch_dtype="float32")
    new_adapter(base, seed=0, exit_layer=1).save_pretrained(tmp_path / "adapter")
    out = tmp_path / "replay.json"
    assert replay.main(["--adapter", str(tmp_path / "adapter"), "--data", str(kangaroo_data), "--base-model-path",
                        str(tiny_base_dir), "--thresholds", "0,0.5,1", "--steps", "1,4", "--holdout-fraction", "0.3",
                        "--draft-cost", "0.2", "--verify-cost", "1.0", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(r["threshold"], r["steps"]): r for r in report["rows"]}
    assert len(rows) == 6 and report["positions"] > 0
    for (threshold, steps), row in rows.items():
        assert 1.0 <= row["simulated_tau"] <= steps + 1 and 1.0 <= row["simulated_drafted"] <= steps
        assert abs(row["estimated_speedup"] - row["simulated_tau"] / (1.0 + 0.2 * row["simulated_drafted"])) < 1e-9
    # threshold 1 stops after one draft whatever the steps; threshold 0 drafts the most
    assert rows[(1.0, 4)]["simulated_drafted"] == rows[(1.0, 1)]["simulated_drafted"] == 1.0
    assert rows[(0.0, 4)]["simulated_drafted"] >= rows[(0.5, 4)]["simulated_drafted"]
    assert "estimated speedup" in capsys.readouterr().out


def test_replay_refuses_half_a_cost_model(kangaroo_data, tmp_path, capsys):
    code = replay.main(["--adapter", str(tmp_path), "--data", str(kangaroo_data), "--draft-cost", "0.2"])
    assert code == 2 and "--verify-cost" in capsys.readouterr().err
