"""Answer generation on a tiny random model: records, conversation, shared stop rule, resume, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from jakiro.chat import prompt_ids
from jakiro.evaluation import compare, gen_baseline_answer, gen_ea_answer, plot, speed
from jakiro.evaluation.engines import HFGenerateEngine, PlainEngine, SpeculativeEngine, cut_at_stop
from jakiro.files import file_sha256
from jakiro.model.sampling import SamplingConfig
from tests.helpers.tiny_models import build_tiny_base, build_tiny_tokenizer

from .conftest import QUESTIONS, read_jsonl

MAX_NEW = 12
TREE = ["--total-token", "8", "--depth", "3", "--top-k-tree", "3"]


def common_args(models, question_file, answer_file, *extra):
    return ["--base-model-path", str(models["base"]), "--bench-name", str(question_file), "--max-new-token",
            str(MAX_NEW), "--answer-file", str(answer_file), "--warmup", "1", "--no-progress", "--dtype", "float32",
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def answered(tiny_models, question_file, tmp_path_factory):
    """Answers of Jakiro and of the naive and hf baselines to the two two-turn questions."""
    out = tmp_path_factory.mktemp("answers")
    files = {"jakiro": out / "jakiro.jsonl", "naive": out / "naive.jsonl", "hf": out / "hf.jsonl"}
    assert gen_ea_answer.main(common_args(tiny_models, question_file, files["jakiro"], "--ea-model-path",
                                          str(tiny_models["jakiro"]), *TREE)) == 0
    for engine in ("naive", "hf"):
        assert gen_baseline_answer.main(common_args(tiny_models, question_file, files[engine],
                                                    "--baseline-engine", engine)) == 0
    return files


def test_answer_records_are_fastchat_readable_with_stats(answered, tiny_models):
    records = read_jsonl(answered["jakiro"])
    assert [r["question_id"] for r in records] == [1, 2]
    for record, question in zip(records, QUESTIONS):
        assert {"question_id", "answer_id", "model_id", "choices", "tstamp"} <= set(record)
        assert record["category"] == question["category"]
        choice = record["choices"][0]
        assert len(choice["turns"]) == len(choice["new_tokens"]) == len(choice["wall_time"]) == 2
        for new, rounds, accepts, wall in zip(choice["new_tokens"], choice["rounds"], choice["accept_lengths"],
                                              choice["wall_time"]):
            assert new == MAX_NEW and wall > 0 and rounds == len(accepts) >= 1
            assert all(1 <= a <= 3 + 2 for a in accepts)  # at most depth + 1 drafts + the bonus token
            assert 1 + sum(accepts[:-1]) < new <= 1 + sum(accepts)  # the last round is cut at max_new_token
    meta = records[0]["meta"]
    for key in ("library_version", "torch", "transformers", "device", "device_name", "threads", "created"):
        assert meta[key] not in (None, "")
    settings = meta["settings"]
    assert settings["dtype"] == "float32" and settings["seed"] == 0 and settings["engine"] == "jakiro"
    assert (settings["total_token"], settings["depth"], settings["top_k_tree"]) == (8, 3, 3)
    assert settings["head_sha256"] == file_sha256(tiny_models["jakiro"] / "model.safetensors")
    assert records[0]["model_id"] == "jakiro-base-temperature-0.0"


def test_turns_share_one_conversation(answered, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    choice = read_jsonl(answered["jakiro"])[0]["choices"][0]
    first, second = QUESTIONS[0]["turns"]
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": choice["turns"][0]},
               {"role": "user", "content": second}]
    assert choice["prompt_tokens"] == [len(prompt_ids(tokenizer, history[:1])), len(prompt_ids(tokenizer, history))]
    assert choice["turns"][0] and choice["prompt_tokens"][1] > choice["prompt_tokens"][0] + 4


def test_method_and_baselines_count_and_answer_alike(answered):
    by_engine = {name: read_jsonl(path) for name, path in answered.items()}
    for name in ("naive", "hf"):
        for mine, theirs in zip(by_engine["jakiro"], by_engine[name]):
            assert mine["choices"][0]["turns"] == theirs["choices"][0]["turns"]  # greedy decoding is lossless
            assert mine["choices"][0]["new_tokens"] == theirs["choices"][0]["new_tokens"]
    naive = by_engine["naive"][0]["choices"][0]
    assert naive["accept_lengths"][0] == [1] * (MAX_NEW - 1) and naive["rounds"][0] == MAX_NEW - 1
    assert by_engine["hf"][0]["choices"][0]["rounds"] == [None, None]


def test_speed_reads_generated_files(answered, tmp_path):
    out = tmp_path / "speed.json"
    assert speed.main([str(answered["jakiro"]), "--baseline", str(answered["naive"]), "--output", str(out)]) == 0
    overall = json.loads(out.read_text())["methods"][0]["overall"]
    accepts = [a for r in read_jsonl(answered["jakiro"]) for turn in r["choices"][0]["accept_lengths"] for a in turn]
    assert overall["tau"] == pytest.approx(sum(accepts) / len(accepts))
    assert overall["new_tokens"] == 4 * MAX_NEW and overall["speedup"] > 0
    assert len(overall["alpha"]) == 4  # depth 3 -> up to 4 drafts on a path


def test_resume_skips_done_questions_and_refuses_other_settings(tiny_models, question_file, tmp_path, capsys):
    path = tmp_path / "resume.jsonl"
    args = common_args(tiny_models, question_file, path, "--baseline-engine", "naive", "--warmup", "0")
    assert gen_baseline_answer.main(args + ["--question-end", "1"]) == 0
    first = read_jsonl(path)
    assert [r["question_id"] for r in first] == [1]
    capsys.readouterr()
    assert gen_baseline_answer.main(args) == 0
    assert "1 question(s) answered" in capsys.readouterr().err
    records = read_jsonl(path)
    assert [r["question_id"] for r in records] == [1, 2] and records[0]["answer_id"] == first[0]["answer_id"]
    assert gen_baseline_answer.main(args + ["--temperature", "1.0"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "temperature: 0.0 -> 1.0" in err
    assert read_jsonl(path) == records


@pytest.mark.parametrize("module, extra, message", [
    (gen_ea_answer, ["--ea-model-path", "no/such/head", "--bench-name", "mt_bench"], "draft head 'no/such/head' not found"),
    (gen_ea_answer, ["--ea-model-path", ".", "--bench-name", "humaneval"], "unknown bench 'humaneval'"),
    (gen_baseline_answer, ["--bench-name", "missing/question.jsonl"], "question file 'missing/question.jsonl' not found"),
    (gen_baseline_answer, ["--bench-name", "mt_bench", "--max-new-token", "0"], "--max-new-token must be >= 1"),
    (gen_baseline_answer, ["--bench-name", "mt_bench", "--temperature", "-1"], "temperature must be"),
    (gen_baseline_answer, ["--bench-name", "mt_bench", "--dtype", "float8"], "unknown dtype 'float8'"),
    (compare, ["--contenders", "hf", "--head", "jakiro"], "--head 'jakiro': write NAME=PATH"),
    (compare, ["--contenders", "hf,medusa"], "unknown contender 'medusa'"),
    (compare, ["--contenders", "hf,jakiro"], "contender 'jakiro' needs a draft head"),
    (compare, ["--contenders", "naive", "--reference", "hf"], "--reference 'hf' is not among"),
    (plot, ["missing.json"], "report 'missing.json' not found"),
])
def test_bad_inputs_give_one_line_errors(module, extra, message, capsys):
    assert module.main(extra + ["--no-progress"] if module not in (plot,) else extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("module", [gen_ea_answer, gen_baseline_answer, speed, compare, plot])
def test_every_command_has_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "usage: python -m jakiro.evaluation." in capsys.readouterr().out


def test_cut_at_stop():
    assert cut_at_stop([5, 6, 2, 7], {2}, 10) == [5, 6, 2]
    assert cut_at_stop([5, 6, 2, 7], {2}, 2) == [5, 6]
    assert cut_at_stop([5, 6, 7], set(), 10) == [5, 6, 7]


def test_engines_share_the_stop_rule_on_a_model_that_stops():
    """A random model that emits EOS: every engine stops on it (inclusive) and counts the same ids."""
    from jakiro.model.ea_model import EaModel

    tokenizer = build_tiny_tokenizer()
    base = build_tiny_base(tokenizer, seed=3)
    ea = EaModel.from_base_model(base, tokenizer, total_token=8, depth=3, top_k=3, seed=0)
    first = prompt_ids(tokenizer, [{"role": "user", "content": "write a short poem about the sea"}])
    fifth = PlainEngine(base, ea.stop_ids).generate(first, SamplingConfig(), 16).tokens[4]
    with torch.no_grad():  # EOS now wins wherever that token would: the first answer stops by step 5
        base.lm_head.weight[tokenizer.eos_token_id] = base.lm_head.weight[fifth] * 1.01
    engines = [SpeculativeEngine(ea), PlainEngine(base, ea.stop_ids), HFGenerateEngine(base, ea.stop_ids),
               HFGenerateEngine(base, ea.stop_ids, 10)]
    greedy, stopped = SamplingConfig(), 0
    for text in ("write a short poem about the sea", "what is two plus two", "tell me a story", "the cat"):
        prompt = prompt_ids(tokenizer, [{"role": "user", "content": text}])
        results = [engine.generate(prompt, greedy, 16) for engine in engines]
        assert all(r.tokens == results[0].tokens for r in results), text
        tokens = results[0].tokens
        assert len(tokens) <= 16 and all(t not in ea.stop_ids for t in tokens[:-1])
        stopped += tokens[-1] in ea.stop_ids and len(tokens) < 16
    assert stopped >= 1  # the stop rule was exercised, not only the length cap


def test_resumed_auto_budget_keeps_the_recorded_budget(tiny_models, question_file, tmp_path):
    path = tmp_path / "auto.jsonl"
    args = common_args(tiny_models, question_file, path, "--ea-model-path", str(tiny_models["jakiro"]),
                       "--total-token", "-1", "--depth", "3", "--top-k-tree", "3", "--warmup", "0")
    assert gen_ea_answer.main(args + ["--question-end", "1"]) == 0
    record = read_jsonl(path)[0]
    assert record["meta"]["settings"]["total_token_requested"] == -1 and record["meta"]["budget_timings"]
    assert record["meta"]["settings"]["depth"] <= 3, "the depth is chosen with the budget, at most --depth"
    record["meta"]["settings"]["total_token"] = 4  # as if this machine had chosen 4 (and depth 2) when the run began
    record["meta"]["settings"]["depth"] = 2
    path.write_text(json.dumps(record) + "\n")
    assert gen_ea_answer.main(args) == 0
    second = read_jsonl(path)[1]
    assert second["meta"]["settings"]["total_token"] == 4 and second["meta"]["settings"]["depth"] == 2
    # a 4-node tree holds 3 drafts: no round can produce more than 3 + the bonus token
    assert max(a for turn in second["choices"][0]["accept_lengths"] for a in turn) <= 4
