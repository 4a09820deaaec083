"""The side-by-side harness on a tiny model with three contenders, and the figures it and `plot` draw."""

from __future__ import annotations

import json

import pytest

from jakiro.evaluation import compare, plot
from jakiro.evaluation.contenders import CONTENDERS
from jakiro.model.budget import CANDIDATE_BUDGETS

from .conftest import read_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tiny_models, question_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    argv = ["--base-model-path", str(tiny_models["base"]), "--ea-model-path", str(tiny_models["jakiro"]),
            "--contenders", "hf,naive,jakiro", "--bench-name", str(question_file), "--max-new-token", "10",
            "--total-token", "-1", "--depth", "3", "--top-k-tree", "3", "--warmup", "1", "--no-progress",
            "--device", "cpu", "--output-dir", str(out)]
    assert compare.main(argv) == 0
    return out, argv


def test_report_has_every_contender_and_metric(compared):
    out, _ = compared
    report = json.loads((out / "compare.json").read_text())
    assert [m["name"] for m in report["methods"]] == ["hf", "naive", "jakiro"] and report["reference"] == "hf"
    hf, naive, jakiro = (m["overall"] for m in report["methods"])
    assert hf["speedup"] == pytest.approx(1.0)
    assert naive["tau"] == pytest.approx(1.0) and naive["cycle_cost"] == pytest.approx(1.0)
    assert jakiro["tau"] >= 1.0 and jakiro["cycle_cost"] > 0 and hf["cycle_cost"] is None
    assert jakiro["speedup"] == pytest.approx(jakiro["tokens_per_second"] / hf["tokens_per_second"])
    assert all(m["overall"]["greedy_agreement"] == 1.0 for m in report["methods"])  # lossless greedy
    assert all(m["overall"]["new_tokens"] == 40 for m in report["methods"])  # 2 questions x 2 turns x 10
    assert set(report["methods"][2]["categories"]) == {"writing", "math"}
    meta = report["meta"]
    assert meta["total_token"] in CANDIDATE_BUDGETS and len(meta["budget_timings"]) == len(CANDIDATE_BUDGETS)
    assert meta["settings"]["total_token_requested"] == -1 and meta["device"] == "cpu"
    assert meta["depth_requested"] == 3 and meta["depth"] == meta["budget_choice"]["depth"] in (1, 2, 3)
    answer = read_jsonl(out / "answers" / "jakiro.jsonl")[0]
    assert answer["meta"]["settings"]["depth"] == meta["depth"], "the contenders draft at the chosen depth"
    markdown = (out / "compare.md").read_text()
    assert "speedup vs HF generate" in markdown and "| Jakiro" in markdown and "auto: chosen by timing" in markdown
    for name in ("tokens_per_second", "speedup", "tau"):
        assert (out / "figs" / f"compare_{name}_by_category.png").read_bytes().startswith(PNG)


def test_contenders_are_interleaved_per_question(compared):
    out, _ = compared
    stamps = {name: {r["question_id"]: r["tstamp"] for r in read_jsonl(out / "answers" / f"{name}.jsonl")}
              for name in ("hf", "naive", "jakiro")}
    order = sorted((stamp, name, qid) for name, by_q in stamps.items() for qid, stamp in by_q.items())
    assert [(name, qid) for _, name, qid in order] == [("hf", 1), ("naive", 1), ("jakiro", 1),
                                                        ("hf", 2), ("naive", 2), ("jakiro", 2)]


def test_rerun_resumes_without_new_answers(compared):
    out, argv = compared
    before = {p.name: p.read_text() for p in (out / "answers").iterdir()}
    assert compare.main(argv) == 0
    assert {p.name: p.read_text() for p in (out / "answers").iterdir()} == before


def test_head_of_the_wrong_method_is_refused(tiny_models, question_file, tmp_path, capsys):
    code = compare.main(["--base-model-path", str(tiny_models["base"]), "--eagle-model-path",
                         str(tiny_models["jakiro"]), "--contenders", "eagle2", "--bench-name", str(question_file),
                         "--no-progress", "--output-dir", str(tmp_path)])
    assert code == 2 and "expects a eagle2 head" in capsys.readouterr().err


def test_registry_lists_the_issue_contenders():
    assert {"hf", "naive", "hf-pld", "eagle2", "jakiro"} <= set(CONTENDERS)
    assert all(CONTENDERS[name].needs_head for name in ("eagle2", "jakiro"))


def test_plot_draws_speed_reports(compared, tmp_path, capsys):
    out, _ = compared
    figs = tmp_path / "figs"
    assert plot.main([str(out / "compare.json"), "--out-dir", str(figs), "--prefix", "t0_"]) == 0
    for name in ("speedup", "tau"):
        assert (figs / f"t0_{name}_by_category.png").read_bytes().startswith(PNG)
    no_speedup = tmp_path / "speed.json"
    no_speedup.write_text(json.dumps({"methods": [{"label": "x", "overall": {"tau": None, "speedup": None},
                                                   "categories": {}}]}))
    capsys.readouterr()
    assert plot.main([str(no_speedup), "--out-dir", str(figs)]) == 2
    assert "nothing to draw" in capsys.readouterr().err


def test_ctrl_c_says_how_many_questions_are_saved_and_a_rerun_finishes(tiny_models, question_file, tmp_path,
                                                                       monkeypatch, capsys):
    import jakiro.evaluation.answering as answering

    out = tmp_path / "interrupted"
    argv = ["--base-model-path", str(tiny_models["base"]), "--ea-model-path", str(tiny_models["jakiro"]),
            "--contenders", "naive,jakiro", "--bench-name", str(question_file), "--max-new-token", "6",
            "--total-token", "8", "--depth", "3", "--top-k-tree", "3", "--warmup", "0", "--no-progress",
            "--device", "cpu", "--output-dir", str(out), "--no-figures"]
    real, calls = answering.answer_question, []

    def ctrl_c_on_the_second_question(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first contender's answer to the second question
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(answering, "answer_question", ctrl_c_on_the_second_question)
    assert compare.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"interrupted: 1 of 2 questions are answered by every contender in {out / 'answers'}; "
                       "rerun the same command to answer the rest and write the report")
    assert "Traceback" not in "\n".join(err) and not (out / "compare.json").exists()
    monkeypatch.setattr(answering, "answer_question", real)
    assert compare.main(argv) == 0
    report = json.loads((out / "compare.json").read_text())
    assert report
    for name in ("naive", "jakiro"):
        assert [r["question_id"] for r in read_jsonl(out / "answers" / f"{name}.jsonl")] == [1, 2]
