"""Answer files under interruption: Ctrl-C says what is saved, a torn last line is dropped, a rerun resumes."""

from __future__ import annotations

import json

import pytest

import jakiro.evaluation.answering as answering
from jakiro.evaluation import gen_baseline_answer, gen_ea_answer
from jakiro.evaluation.files import complete_records, drop_torn_last_line, read_jsonl
from jakiro.errors import ConfigError

from .conftest import write_jsonl

TREE = ["--total-token", "8", "--depth", "3", "--top-k-tree", "3"]


def args_for(models, question_file, answer_file, *extra):
    return ["--base-model-path", str(models["base"]), "--bench-name", str(question_file), "--max-new-token", "6",
            "--answer-file", str(answer_file), "--warmup", "0", "--no-progress", "--dtype", "float32",
            "--device", "cpu", *extra]


@pytest.mark.parametrize("command", ["gen_ea_answer", "gen_baseline_answer"])
def test_ctrl_c_says_how_many_answers_are_saved_and_a_rerun_resumes(tiny_models, question_file, tmp_path,
                                                                     monkeypatch, capsys, command):
    module = {"gen_ea_answer": gen_ea_answer, "gen_baseline_answer": gen_baseline_answer}[command]
    extra = ["--ea-model-path", str(tiny_models["jakiro"]), *TREE] if module is gen_ea_answer else []
    path = tmp_path / "answers.jsonl"
    real, calls = answering.answer_question, []

    def ctrl_c_on_the_second_question(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(answering, "answer_question", ctrl_c_on_the_second_question)
    assert module.main(args_for(tiny_models, question_file, path, *extra)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"interrupted: 1 of 2 answers are saved in {path}; rerun the same command to answer the rest")
    assert "Traceback" not in "\n".join(err)
    first = read_jsonl(path)
    assert [r["question_id"] for r in first] == [1]

    monkeypatch.setattr(answering, "answer_question", real)
    assert module.main(args_for(tiny_models, question_file, path, *extra)) == 0
    records = read_jsonl(path)
    assert [r["question_id"] for r in records] == [1, 2] and records[0] == first[0]  # nothing lost, none redone


def test_ctrl_c_while_loading_is_one_line(tiny_models, question_file, tmp_path, monkeypatch, capsys):
    def interrupted_load(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("jakiro.base_models.load_base_model", interrupted_load)
    path = tmp_path / "never.jsonl"
    assert gen_baseline_answer.main(args_for(tiny_models, question_file, path)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted before any answer of this run was written; rerun the same command to start "
                   "(or resume)"]
    assert not path.exists()


def test_a_torn_last_line_is_dropped_with_a_note_and_answered_again(tiny_models, question_file, tmp_path, capsys):
    path = tmp_path / "torn.jsonl"
    args = args_for(tiny_models, question_file, path, "--baseline-engine", "naive")
    assert gen_baseline_answer.main(args + ["--question-end", "1"]) == 0
    complete = path.read_text()
    torn = '{"question_id": 2, "answer_id": "abc", "choices": [{"turns": ["the cat sa'
    path.write_text(complete + torn)  # as a kill in the middle of appending question 2 leaves it
    capsys.readouterr()
    assert gen_baseline_answer.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: dropped the incomplete last line of {path} ({len(torn)} bytes, a write cut short)" in err
    records = read_jsonl(path)
    assert [r["question_id"] for r in records] == [1, 2]
    assert records[0] == json.loads(complete) and records[1]["answer_id"] != "abc"


def test_only_the_last_line_may_be_torn(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1}, {"question_id": 2}])
    text = path.read_text()
    assert drop_torn_last_line(path) == 0 and path.read_text() == text  # a whole file is left alone
    path.write_text(text.rstrip("\n"))  # a whole last record without its newline gets one
    assert drop_torn_last_line(path) == 0 and path.read_text() == text
    path.write_text('{"question_id": 1}\n{"quest\n{"question_id": 3}\n')
    assert drop_torn_last_line(path) == 0
    with pytest.raises(ConfigError, match=r"a.jsonl:2 is not valid JSON"):
        read_jsonl(path)  # a broken line in the middle is not an interrupted append: it is reported
    assert [r["question_id"] for r in complete_records(path)] == [1, 3]
