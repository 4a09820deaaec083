"""Question sets: the packaged benches, custom files, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from jakiro.errors import ConfigError
from jakiro.evaluation.questions import categories_by_id, load_questions, resolve_bench


def test_packaged_benches_load():
    label, mt = load_questions("mt_bench")
    assert label == "mt_bench" and len(mt) == 80 and all(len(q.turns) == 2 for q in mt)
    assert {q.category for q in mt} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction",
                                        "stem", "humanities"}
    label, spec = load_questions("spec_bench")
    assert label == "spec_bench" and len(spec) == 480
    assert {"translation", "summarization", "qa", "math_reasoning", "rag"} <= {q.category for q in spec}


def test_slice_and_custom_file(question_file):
    label, questions = load_questions(str(question_file), 1, 2)
    assert label == question_file.parent.name  # a question.jsonl is labelled by its folder, as the packaged ones
    assert [q.question_id for q in questions] == [2]
    assert load_questions(str(question_file.parent))[1][0].turns[1] == "now make it rhyme"
    assert categories_by_id(str(question_file)) == {1: "writing", 2: "math"}


@pytest.mark.parametrize("bench, message", [
    ("humaneval", "unknown bench 'humaneval'"),
    ("missing/question.jsonl", "not found"),
    ("nowhere.jsonl", "not found"),
])
def test_unknown_or_missing_bench(bench, message):
    with pytest.raises(ConfigError, match=message):
        resolve_bench(bench)


@pytest.mark.parametrize("content, message", [
    ('{"question_id": 1}\n', "needs 'question_id' and 'turns'"),
    ('{"question_id": 1, "turns": []}\n', "non-empty list"),
    ('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n', "duplicate question_id"),
    ("not json\n", "not valid JSON"),
    ("\n", "holds no questions"),
])
def test_bad_question_files(tmp_path, content, message):
    path = tmp_path / "question.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_questions(str(path))


def test_empty_selection(question_file):
    with pytest.raises(ConfigError, match="select no question"):
        load_questions(str(question_file), 5, 9)
    with pytest.raises(ConfigError, match=">= 0"):
        load_questions(str(question_file), -1)


def test_per_category_sample_keeps_file_order():
    _, spec = load_questions("spec_bench", per_category=2)
    categories = [q.category for q in spec]
    assert len(spec) == 2 * len(set(categories))
    assert all(categories.count(name) == 2 for name in set(categories))
    _, full = load_questions("spec_bench")
    first_two = [q.question_id for q in full if q.category == "translation"][:2]
    assert [q.question_id for q in spec if q.category == "translation"] == first_two
    _, sliced = load_questions("spec_bench", 0, 100, per_category=1)
    assert len(sliced) == len({q.category for q in full[:100]})
    with pytest.raises(ConfigError, match="--per-category must be >= 1, got 0"):
        load_questions("spec_bench", per_category=0)
