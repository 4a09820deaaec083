"""Kangaroo evaluation on a tiny model: the answer and baseline wrappers, Spec-Bench-style per-task speed
reports from the shared code, the `kangaroo` contender of `compare`, and one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch

from jakiro import load_base_model
from jakiro.evaluation import compare, speed
from jakiro.evaluation.contenders import CONTENDERS
from kangaroo.evaluation import gen_baseline_answer, gen_ea_answer
from kangaroo.model.adapter import new_adapter
from tests.helpers.jsonl import read_jsonl, write_jsonl
from tests.helpers.tiny_models import save_tiny_base, save_tiny_head

# MT-bench categories and a Spec-Bench task: reports group the first three as one `mt_bench` task too
QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["write a short poem about the sea", "now make it rhyme"]},
    {"question_id": 2, "category": "math", "turns": ["what is two plus two"]},
    {"question_id": 3, "category": "translation", "turns": ["tell me a story about a small robot"]},
]
COMMON = ["--max-new-token", "8", "--warmup", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("kangaroo-eval")
    base_dir = save_tiny_base(root / "base")
    base, _ = load_base_model(str(base_dir), torch_dtype="float32")
    new_adapter(base, seed=0, exit_layer=1, threshold=0.3, steps=4).save_pretrained(root / "kangaroo")
    questions = write_jsonl(root / "questions" / "question.jsonl", QUESTIONS)
    return {"base": base_dir, "kangaroo": root / "kangaroo", "jakiro": save_tiny_head(base_dir, root / "jakiro"),
            "questions": questions}


def test_answers_baseline_and_per_task_speed(models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base_args = ["--base-model-path", str(models["base"]), "--bench-name", str(models["questions"]), *COMMON]
    assert gen_ea_answer.main([*base_args, "--ea-model-path", str(models["kangaroo"]), "--steps", "3",
                               "--tree-levels", "1"]) == 0
    answers = tmp_path / "answers" / "questions" / "kangaroo-l1-t0.3-s3-tree1x2-base-temperature-0.0.jsonl"
    records = read_jsonl(answers)
    settings = records[0]["meta"]["settings"]
    assert (settings["threshold"], settings["steps"], settings["exit_layer"], settings["tree_levels"]) == (0.3, 3, 1, 1)
    assert settings["engine"] == "kangaroo" and settings["max_path_drafts"] == 3
    assert gen_baseline_answer.main([*base_args, "--threshold", "0.9", "--answer-file", "base.jsonl"]) == 0
    baseline = {r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(tmp_path / "base.jsonl")}
    assert {r["question_id"]: r["choices"][0]["turns"] for r in records} == baseline  # lossless greedy

    assert speed.main([str(answers), "--baseline", "base.jsonl", "--output", "speed.json"]) == 0
    report = json.loads((tmp_path / "speed.json").read_text())["methods"][0]
    assert list(report["categories"]) == ["writing", "math", "translation", "mt_bench"]
    assert report["categories"]["mt_bench"]["questions"] == 2 and report["categories"]["mt_bench"]["turns"] == 3
    assert report["categories"]["mt_bench"]["speedup"] is not None and report["overall"]["tau"] >= 1.0

    # resuming the same answer file with other drafting settings is refused in one line
    code = gen_ea_answer.main([*base_args, "--ea-model-path", str(models["kangaroo"]), "--steps", "2",
                               "--answer-file", str(answers)])
    err = capsys.readouterr().err
    assert code == 2 and "steps: 3 -> 2" in err and "Traceback" not in err


def test_jakiro_head_is_refused_in_one_line(models, tmp_path, capsys):
    code = gen_ea_answer.main(["--base-model-path", str(models["base"]), "--ea-model-path", str(models["jakiro"]),
                               "--bench-name", str(models["questions"]), "--answer-file", str(tmp_path / "a.jsonl"),
                               *COMMON])
    err = capsys.readouterr().err
    assert code == 2 and "expects a kangaroo head" in err and "jakiro head" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("option", [["--threshold", "1.5"], ["--steps", "0"], ["--tree-levels", "-1"]])
def test_bad_options_fail_before_loading(models, tmp_path, capsys, option):
    code = gen_ea_answer.main(["--base-model-path", str(tmp_path / "no-model"), "--ea-model-path",
                               str(models["kangaroo"]), "--bench-name", str(models["questions"]), *COMMON, *option])
    assert code == 2 and "error:" in capsys.readouterr().err


def test_compare_runs_the_kangaroo_contender(models, tmp_path):
    assert CONTENDERS["kangaroo"].needs_head
    out = tmp_path / "compare"
    assert compare.main(["--base-model-path", str(models["base"]), "--head", f"kangaroo={models['kangaroo']}",
                         "--contenders", "naive,kangaroo", "--bench-name", str(models["questions"]), *COMMON,
                         "--no-figures", "--output-dir", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    naive, kangaroo = report["methods"]
    assert kangaroo["name"] == "kangaroo" and kangaroo["settings"]["threshold"] == 0.3
    assert kangaroo["overall"]["greedy_agreement"] == 1.0 and kangaroo["overall"]["tau"] >= 1.0
    assert "mt_bench" in kangaroo["categories"] and kangaroo["categories"]["mt_bench"]["cycle_cost"] is not None
    statistics = report["meta"]["drafter_statistics"]["kangaroo"]  # the timed answers' drafting work
    assert statistics["rounds"] == kangaroo["overall"]["rounds"] and 1 <= statistics["drafted_per_round"] <= 4
