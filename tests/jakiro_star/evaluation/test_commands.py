"""Jakiro* evaluation on a tiny model: the answer and baseline wrappers (static and dynamic tree), the
`jakiro-star` contenders of `compare` with their expert-mixing statistics, and one-line refusals of heads of
the other method (both directions)."""

from __future__ import annotations

import json

import pytest
import torch

from jakiro.evaluation import compare
from jakiro.evaluation.contenders import CONTENDERS
from jakiro_star.evaluation import gen_baseline_answer, gen_ea_answer
from tests.helpers.jsonl import read_jsonl, write_jsonl
from tests.helpers.tiny_models import save_tiny_base, save_tiny_head

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["write a short poem about the sea", "now make it rhyme"]},
    {"question_id": 2, "category": "math", "turns": ["what is two plus two"]},
]
COMMON = ["--max-new-token", "8", "--warmup", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("star-eval")
    base = save_tiny_base(root / "base")
    questions = write_jsonl(root / "questions" / "question.jsonl", QUESTIONS)
    return {"base": base, "jakiro_star": save_tiny_head(base, root / "star", method="jakiro_star"),
            "jakiro": save_tiny_head(base, root / "jakiro"), "questions": questions}


def test_answers_for_both_trees_equal_the_baseline(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base_args = ["--base-model-path", str(models["base"]), "--bench-name", str(models["questions"]), *COMMON]
    assert gen_baseline_answer.main([*base_args, "--answer-file", "base.jsonl"]) == 0
    baseline = {r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(tmp_path / "base.jsonl")}
    for tree, model_id, nodes in (("static", "jakiro_star-base-temperature-0.0", 27),
                                  ("dynamic", "jakiro_star-dynamic-base-temperature-0.0", None)):
        assert gen_ea_answer.main([*base_args, "--ea-model-path", str(models["jakiro_star"]), "--tree", tree]) == 0
        records = read_jsonl(tmp_path / "answers" / "questions" / f"{model_id}.jsonl")
        settings = records[0]["meta"]["settings"]
        assert settings["engine"] == "jakiro_star" and settings["tree"] == tree
        assert settings.get("static_tree_nodes") == nodes
        assert {r["question_id"]: r["choices"][0]["turns"] for r in records} == baseline  # lossless greedy


def test_help_names_the_wrappers(capsys):
    for module in (gen_ea_answer, gen_baseline_answer):
        with pytest.raises(SystemExit) as info:
            module.main(["--help"])
        assert info.value.code == 0
        assert module.PROG in capsys.readouterr().out


@pytest.mark.parametrize("direction", ["jakiro head to Jakiro*", "Jakiro* head to Jakiro"])
def test_head_of_the_other_method_is_refused_in_one_line(models, tmp_path, capsys, direction):
    common = ["--base-model-path", str(models["base"]), "--bench-name", str(models["questions"]), *COMMON]
    if direction == "jakiro head to Jakiro*":
        code = gen_ea_answer.main([*common, "--ea-model-path", str(models["jakiro"]),
                                   "--answer-file", str(tmp_path / "a.jsonl")])
        expected, found = "jakiro_star", "jakiro"
    else:
        code = compare.main([*common, "--ea-model-path", str(models["jakiro_star"]), "--contenders", "jakiro",
                             "--output-dir", str(tmp_path)])
        expected, found = "jakiro", "jakiro_star"
    err = capsys.readouterr().err
    assert code == 2 and f"expects a {expected} head" in err and f"is a {found} head" in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_compare_runs_both_jakiro_star_contenders(models, tmp_path):
    assert {"jakiro-star", "jakiro-star-dynamic"} <= set(CONTENDERS)
    assert CONTENDERS["jakiro-star-dynamic"].head_name == "jakiro-star"
    argv = ["--base-model-path", str(models["base"]), "--bench-name", str(models["questions"]), *COMMON,
            "--star-model-path", str(models["jakiro_star"]), "--contenders", "naive,jakiro-star,jakiro-star-dynamic",
            "--total-token", "12", "--depth", "3", "--top-k-tree", "3", "--output-dir", str(tmp_path), "--no-figures"]
    assert compare.main(argv) == 0
    report = json.loads((tmp_path / "compare.json").read_text())
    methods = {m["name"]: m for m in report["methods"]}
    assert set(methods) == {"naive", "jakiro-star", "jakiro-star-dynamic"}
    assert all(m["overall"]["greedy_agreement"] == 1.0 for m in methods.values())
    assert methods["jakiro-star"]["label"] == "Jakiro* (static tree)"
    stats = report["meta"]["drafter_statistics"]
    assert set(stats) == {"jakiro-star", "jakiro-star-dynamic"}
    for name in stats:
        decoupling = stats[name]["decoupling"]
        assert decoupling["rounds"] > 0 and 0.0 <= decoupling["mixed_level_share"] <= 1.0
    settings = {name: read_jsonl(tmp_path / "answers" / f"{name}.jsonl")[0]["meta"]["settings"]
                for name in ("jakiro-star", "jakiro-star-dynamic")}
    assert settings["jakiro-star"]["tree"] == "static" and settings["jakiro-star"]["static_tree_nodes"] == 12
    assert settings["jakiro-star-dynamic"]["tree"] == "dynamic"
