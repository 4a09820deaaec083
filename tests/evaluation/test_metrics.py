"""Metrics from hand-made answer files, checked against hand computations (docs/evaluation.md definitions)."""

from __future__ import annotations

import json

import pytest

from jakiro.evaluation import speed
from jakiro.evaluation.answer_sets import load_answer_set
from jakiro.evaluation.metrics import OVERALL, acceptance_rates, summarize_against

from .conftest import write_jsonl

SETTINGS = {"temperature": 0.0, "top_p": 0.0, "top_k": 0, "max_new_token": 8, "dtype": "float32",
            "base_model": "tiny", "bench": "q"}


def ours(qid, category, new_tokens, wall_time, accept_lengths=None, engine="jakiro", **settings):
    """A record as gen_*_answer writes it (only the fields metrics read, plus texts)."""
    rounds = [len(a) for a in accept_lengths] if accept_lengths else [None] * len(new_tokens)
    choice = {"index": 0, "turns": ["x"] * len(new_tokens), "new_tokens": new_tokens, "rounds": rounds,
              "wall_time": wall_time, "accept_lengths": accept_lengths or [None] * len(new_tokens),
              "prefill_time": [0.0] * len(new_tokens)}
    meta = {"library": "jakiro", "device": "cpu",
            "settings": {**SETTINGS, "engine": engine, "max_path_drafts": 3, **settings}}
    return {"question_id": qid, "answer_id": "a", "model_id": engine, "category": category, "choices": [choice],
            "tstamp": 0.0, "meta": meta}


@pytest.fixture
def method_file(tmp_path):
    return write_jsonl(tmp_path / "method.jsonl", [
        ours(1, "writing", [5, 3], [1.0, 0.5], [[3, 1], [2]]),
        ours(2, "math", [4], [2.0], [[3]]),
    ])


@pytest.fixture
def baseline_file(tmp_path):
    return write_jsonl(tmp_path / "baseline.jsonl", [
        ours(1, "writing", [5, 3], [2.0, 1.0], engine="naive", max_path_drafts=None),
        ours(2, "math", [4], [3.0], engine="naive", max_path_drafts=None),
    ])


def test_metrics_of_our_files_match_hand_computation(method_file, baseline_file):
    method, baseline = load_answer_set(method_file), load_answer_set(baseline_file)
    result = summarize_against(method.turns, baseline.turns, max_path_drafts=3)
    overall = result[OVERALL]
    assert overall["new_tokens"] == 12 and overall["questions"] == 2 and overall["turns"] == 3
    assert overall["tokens_per_second"] == pytest.approx(12 / 3.5)
    assert overall["tau"] == pytest.approx((3 + 1 + 2 + 3) / 4)
    # accepted drafts per round: 2, 0, 1, 2
    assert overall["alpha"] == pytest.approx([3 / 4, 2 / 3, 0.0])
    assert overall["speedup"] == pytest.approx((12 / 3.5) / (12 / 6.0))
    assert overall["speedup_published"] == pytest.approx(((8 / 1.5 + 4 / 2.0) / 2) / ((8 / 3.0 + 4 / 3.0) / 2))
    assert overall["tau_published"] is None  # only original logs carry idxs
    assert result["writing"]["speedup"] == pytest.approx((8 / 1.5) / (8 / 3.0))
    assert result["writing"]["tau"] == pytest.approx(2.0)
    assert result["math"]["tau"] == pytest.approx(3.0)
    assert result["math"]["alpha"] == pytest.approx([1.0, 1.0, 0.0])
    assert list(result) == [OVERALL, "writing", "math"]


def test_alpha_depth_defaults_to_deepest_accepted_draft(method_file):
    turns = load_answer_set(method_file).turns
    assert acceptance_rates(turns) == pytest.approx([3 / 4, 2 / 3])
    assert acceptance_rates(turns, max_path_drafts=4) == pytest.approx([3 / 4, 2 / 3, 0.0, None])


def test_speed_cli_writes_json_and_prints_table(method_file, baseline_file, tmp_path, capsys):
    out = tmp_path / "speed.json"
    md = tmp_path / "speed.md"
    assert speed.main([str(method_file), "--baseline", str(baseline_file), "--output", str(out),
                       "--markdown", str(md), "--labels", "mine"]) == 0
    report = json.loads(out.read_text())
    entry = report["methods"][0]
    assert report["kind"] == "jakiro-speed" and entry["label"] == "mine" and entry["format"] == "jakiro"
    assert entry["overall"]["speedup"] == pytest.approx((12 / 3.5) / 2.0)
    assert set(entry["categories"]) == {"writing", "math"}
    assert entry["categories"]["math"]["speedup"] == pytest.approx(2.0 / (4 / 3.0))
    printed = capsys.readouterr().out
    assert "| writing" in printed and "| overall" in printed and "1.71" in printed
    assert "| writing" in md.read_text() and "| overall" in md.read_text()


def original(qid, new_tokens, idxs, wall_time, turns=None):
    """A line as the original Jakiro/EAGLE gen_ea_answer_*.py scripts wrote it."""
    choice = {"index": 0, "turns": turns or ["x"] * len(wall_time), "idxs": idxs, "new_tokens": new_tokens,
              "wall_time": wall_time}
    return {"question_id": qid, "answer_id": "sh0rtuu1d", "model_id": "ess-vicuna-7b-fp16-temperature-0.0",
            "choices": [choice], "tstamp": 1700000000.0}


def test_original_fastchat_files_are_recomputed(tmp_path, question_file, tokenizer_dir):
    method = write_jsonl(tmp_path / "ess.jsonl", [original(1, [6, 4], [2, 1], [1.0, 1.0]),
                                                  original(2, [6], [2], [2.0])])
    # the original baseline never filled new_tokens: tokens are recounted from the text (len(ids) - 1)
    base = write_jsonl(tmp_path / "base.jsonl", [
        original(1, [0, 0], [0, 0], [2.0, 2.0], turns=["the cat sat on the mat", "now make it rhyme"]),
        original(2, [0], [0], [4.0], turns=["what is two plus two"]),
    ])
    out = tmp_path / "speed.json"
    assert speed.main([str(method), "--baseline", str(base), "--bench-name", str(question_file),
                       "--tokenizer", str(tokenizer_dir), "--output", str(out)]) == 0
    entry = json.loads(out.read_text())["methods"][0]
    overall = entry["overall"]
    assert entry["format"] == "fastchat"
    assert overall["tau"] == pytest.approx(16 / (3 + 2 + 3))  # rounds = idxs + 1
    assert overall["tau_published"] == pytest.approx((10 / 3 + 6 / 2) / 2)
    assert overall["tokens_per_second"] == pytest.approx(16 / 4.0)
    assert overall["baseline_tokens_per_second"] == pytest.approx((5 + 3 + 4) / 8.0)
    assert overall["speedup"] == pytest.approx(4.0 / 1.5)
    assert overall["speedup_published"] == pytest.approx(((10 / 2 + 6 / 2) / 2) / ((8 / 4 + 4 / 4) / 2))
    assert overall["alpha"] is None
    assert entry["categories"]["writing"]["tau"] == pytest.approx(10 / 5)  # categories from --bench-name


def run_speed(argv, capsys):
    code = speed.main(argv)
    return code, capsys.readouterr().err


def test_original_baseline_without_tokenizer_is_a_clear_error(tmp_path, method_file, capsys):
    base = write_jsonl(tmp_path / "base.jsonl", [original(1, [0, 0], [0, 0], [2.0, 2.0])])
    code, err = run_speed([str(method_file), "--baseline", str(base), "--output", str(tmp_path / "o.json")], capsys)
    assert code == 2 and err.startswith("error: ") and "--tokenizer" in err and "Traceback" not in err


def test_mismatched_question_sets(tmp_path, method_file, capsys):
    partial = write_jsonl(tmp_path / "partial.jsonl", [ours(1, "writing", [5, 3], [2.0, 1.0], engine="naive")])
    out = tmp_path / "o.json"
    code, err = run_speed([str(method_file), "--baseline", str(partial), "--output", str(out)], capsys)
    assert code == 2 and "mismatched files" in err and "1 question(s) only in" in err and not out.exists()
    assert speed.main([str(method_file), "--baseline", str(partial), "--output", str(out), "--allow-mismatch"]) == 0
    overall = json.loads(out.read_text())["methods"][0]["overall"]
    assert overall["questions"] == 1 and overall["speedup"] == pytest.approx((8 / 1.5) / (8 / 3.0))


def test_mismatched_settings(tmp_path, method_file, capsys):
    hot = write_jsonl(tmp_path / "hot.jsonl", [ours(1, "writing", [5, 3], [2.0, 1.0], engine="naive", temperature=1.0),
                                               ours(2, "math", [4], [3.0], engine="naive", temperature=1.0)])
    code, err = run_speed([str(method_file), "--baseline", str(hot), "--output", str(tmp_path / "o.json")], capsys)
    assert code == 2 and "temperature 0.0 vs 1.0" in err


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ('{"question_id": 1, "turns": ["q"]}\n', "is not an answer"),
    ("{broken\n", "not valid JSON"),
    ("", "holds no answers"),
])
def test_bad_answer_files(tmp_path, capsys, content, message):
    path = tmp_path / "answers.jsonl"
    if content is not None:
        path.write_text(content)
    code, err = run_speed([str(path), "--output", str(tmp_path / "o.json")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_speed_without_baseline_then_plot(method_file, baseline_file, tmp_path):
    from jakiro.evaluation import plot

    alone, paired = tmp_path / "alone.json", tmp_path / "paired.json"
    assert speed.main([str(method_file), "--output", str(alone)]) == 0
    overall = json.loads(alone.read_text())["methods"][0]["overall"]
    assert overall["speedup"] is None and overall["tau"] == pytest.approx(2.25)
    assert speed.main([str(method_file), "--baseline", str(baseline_file), "--output", str(paired)]) == 0
    figs = tmp_path / "figs"
    assert plot.main([str(alone), str(paired), "--out-dir", str(figs)]) == 0
    assert sorted(p.name for p in figs.iterdir()) == ["speedup_by_category.png", "tau_by_category.png"]
    assert (figs / "tau_by_category.png").read_bytes().startswith(b"\x89PNG")
