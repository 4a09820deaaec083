"""The eval_metric shell scripts: which commands they run, with which paths (a stub stands in for Python)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "eval_metric"


@pytest.fixture
def stub_python(tmp_path):
    """An executable that logs its arguments, one call per line, instead of running anything."""
    log = tmp_path / "calls.log"
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {shlex.quote(str(log))}\necho >> {shlex.quote(str(log))}\n')
    stub.chmod(0o755)
    return stub, log


def run_script(name, args, stub, cwd):
    env = {**os.environ, "PYTHON": str(stub)}
    return subprocess.run(["bash", str(SCRIPTS / name), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def calls(log: Path) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines() if line.strip()]


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_eval_method_runs_both_temperatures_then_speed_and_plot(stub_python, tmp_path):
    stub, log = stub_python
    result = run_script("eval_method.sh", ["--base-model", "models/base", "--ea-model", "heads/jk/", "--out-dir",
                                           "out dir", "--bench", "data/mybench/question.jsonl", "--",
                                           "--total-token", "-1", "--dtype", "float16"], stub, tmp_path)
    assert result.returncode == 0, result.stderr
    made = calls(log)
    modules = [c[1] for c in made]
    assert modules == ["jakiro.evaluation.gen_baseline_answer", "jakiro.evaluation.gen_ea_answer",
                       "jakiro.evaluation.speed"] * 2 + ["jakiro.evaluation.plot"]
    for t, (base, method, speed) in zip(("0.0", "1.0"), (made[0:3], made[3:6])):
        assert option(base, "--temperature") == option(method, "--temperature") == t
        assert option(base, "--bench-name") == option(method, "--bench-name") == "data/mybench/question.jsonl"
        assert option(base, "--answer-file") == f"out dir/answers/mybench/baseline-naive-temperature-{t}.jsonl"
        assert option(method, "--answer-file") == f"out dir/answers/mybench/jk-temperature-{t}.jsonl"
        assert option(method, "--ea-model-path") == "heads/jk/" and option(base, "--baseline-engine") == "naive"
        assert base[-4:] == method[-4:] == ["--total-token", "-1", "--dtype", "float16"]
        assert speed[2] == option(method, "--answer-file") and option(speed, "--baseline") == option(base, "--answer-file")
        assert option(speed, "--output") == f"out dir/speed-mybench-jk-temperature-{t}.json"
    assert made[6][2:4] == ["out dir/speed-mybench-jk-temperature-0.0.json", "out dir/speed-mybench-jk-temperature-1.0.json"]
    assert option(made[6], "--out-dir") == "out dir/figs"


def test_compare_all_passes_heads_and_temperatures(stub_python, tmp_path):
    stub, log = stub_python
    result = run_script("compare_all.sh", ["--base-model", "smollm2-135m-instruct", "--ea-model",
                                           "jakiro-smollm2-135m-instruct", "--star-model", "star-head", "--out-dir",
                                           "res", "--temperatures", "0.0", "--", "--total-token", "-1"], stub, tmp_path)
    assert result.returncode == 0, result.stderr
    compare_call, plot_call = calls(log)
    assert compare_call[1] == "jakiro.evaluation.compare" and "--eagle-model-path" not in compare_call
    assert option(compare_call, "--ea-model-path") == "jakiro-smollm2-135m-instruct"
    assert option(compare_call, "--star-model-path") == "star-head"
    assert option(compare_call, "--output-dir") == "res/compare-mt_bench-temperature-0.0"
    assert compare_call[-2:] == ["--total-token", "-1"]
    assert plot_call[2] == "res/compare-mt_bench-temperature-0.0/compare.json"


@pytest.mark.parametrize("name, args, message", [
    ("eval_method.sh", ["--base-model", "b"], "are required"),
    ("eval_method.sh", ["--bogus"], "unknown argument --bogus"),
    ("compare_all.sh", ["--out-dir", "o"], "are required"),
])
def test_scripts_reject_bad_arguments(stub_python, tmp_path, name, args, message):
    stub, log = stub_python
    result = run_script(name, args, stub, tmp_path)
    assert result.returncode == 2 and message in result.stderr and not log.exists()
