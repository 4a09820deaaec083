"""The profiling command on a tiny model: both tables, the JSON record, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from jakiro.evaluation import profile
from jakiro.model.fast_linear import mkl_packing_available


def test_profile_prints_and_records_both_tables(tiny_models, tmp_path, capsys):
    out = tmp_path / "profile.json"
    argv = ["--base-model-path", str(tiny_models["base"]), "--ea-model-path", str(tiny_models["jakiro"]),
            "--ks", "1,3,6", "--repeats", "2", "--prefix", "8", "--rounds", "3", "--runs", "2", "--total-token", "6",
            "--depth", "2", "--top-k-tree", "3", "--device", "cpu", "--no-progress", "--json", str(out)]
    assert profile.main(argv) == 0
    text = capsys.readouterr().out
    assert "## Forward cost" in text and "## Round breakdown" in text
    record = json.loads(out.read_text())
    assert record["kind"] == "jakiro-profile"
    assert record["meta"]["threads"] == 1 and record["settings"]["dtype"] == "float32"
    assert {"torch", "transformers", "device", "cpu", "fast_kernel"} <= set(record["meta"])
    assert record["meta"]["fast_kernel"] in ("panels", "mkl")
    entries = record["forward_costs"]["entries"]
    assert [e["rows"] for e in entries] == [1, 3, 6]
    assert entries[0]["verify_steps"] == pytest.approx(1.0) and all(e["step_ms"] > 0 for e in entries)
    fast = mkl_packing_available()
    assert all((e["fast_ms"] is not None) == (fast and e["rows"] > 1) for e in entries)
    rounds = record["round_breakdown"]
    variants = ["now", "before"]
    assert rounds["variants"]["before"] == {"options": {"fast_verify": False, "draft_dtype": "float32"},
                                            "fast_verify": False, "draft_dtype": "float32"}
    assert rounds["variants"]["now"]["fast_verify"] == fast
    for name in variants:
        r = rounds[name]
        assert r["tau"] >= 1.0 and all(run["rounds"] == 3 for run in r["runs"])
        parts = r["draft_steps"] + r["verify_steps"] + r["bookkeeping_steps"]
        assert parts == pytest.approx(r["round_steps"], rel=1e-6), "the parts add up to the round"


def test_profile_without_a_head_prints_only_the_cost_table(tiny_models, capsys):
    argv = ["--base-model-path", str(tiny_models["base"]), "--ea-model-path", "none", "--ks", "1,2",
            "--repeats", "1", "--prefix", "4", "--device", "cpu", "--no-progress"]
    assert profile.main(argv) == 0
    text = capsys.readouterr().out
    assert "## Forward cost" in text and "Round breakdown" not in text


@pytest.mark.parametrize("argv,message", [
    (["--ks", "1,x"], "--ks must be comma-separated"),
    (["--ks", "0,2"], "--ks must be positive"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--total-token", "1"], "--total-token must be >= 2"),
    (["--dtype", "float8"], "unknown dtype"),
    (["--variants", "now,later"], "--variants 'now,later': use some of"),
    (["--ea-model-path", "no-such-head"], "not found"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert profile.main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
