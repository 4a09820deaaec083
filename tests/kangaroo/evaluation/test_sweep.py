"""The settings sweep on a tiny model: one row per setting with costs in plain steps, lossless, resumable."""

from __future__ import annotations

import json

import pytest

from kangaroo.evaluation import sweep

from .test_commands import COMMON, models  # noqa: F401  (the module fixture)


def test_sweep_reports_every_setting_and_resumes(models, tmp_path):  # noqa: F811
    out = tmp_path / "sweep"
    argv = ["--base-model-path", str(models["base"]), "--adapter", f"l1={models['kangaroo']}",
            "--thresholds", "0.0,0.5", "--steps", "3", "--tree-levels", "0,1", "--bench-name",
            str(models["questions"]), *COMMON, "--warmup", "1", "--output-dir", str(out)]
    assert sweep.main(argv) == 0
    report = json.loads((out / "sweep.json").read_text())
    rows = {r["name"]: r for r in report["settings"]}
    assert set(rows) == {"l1-t0-s3", "l1-t0.5-s3", "l1-t0-s3-tree1", "l1-t0.5-s3-tree1"}
    for row in rows.values():
        assert row["greedy_agreement"] == 1.0 and row["exit_layer"] == 1 and row["timed_rounds"] > 0
        assert 1.0 <= row["drafted_per_round"] <= 3 and row["draft_cost_per_drafted_token"] > 0
        assert row["nodes_per_round"] == pytest.approx(row["drafted_per_round"] + row["tree_levels"])
    assert rows["l1-t0-s3"]["drafted_per_round"] == 3.0  # threshold 0 never stops early
    assert "| l1-t0-s3 " in (out / "sweep.md").read_text()
    answers = {p.name: p.read_text() for p in (out / "answers").iterdir()}
    assert len(answers) == 5  # the plain loop and four settings
    assert sweep.main(argv) == 0
    assert {p.name: p.read_text() for p in (out / "answers").iterdir()} == answers


def test_bad_lists_are_one_line_errors(models, tmp_path, capsys):  # noqa: F811
    code = sweep.main(["--adapter", str(models["kangaroo"]), "--thresholds", "high", "--output-dir", str(tmp_path)])
    assert code == 2 and "--thresholds must be comma-separated numbers" in capsys.readouterr().err
