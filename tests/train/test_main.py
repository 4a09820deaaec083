"""Training end to end on a tiny model: train, export, load, lossless output, resume, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import jakiro.train.main as train_main
import jakiro.train.recipe as recipe
from jakiro import EaModel
from tests.helpers.training import assert_greedy_matches_base, assert_same_weights, interrupted_on_call

TRAIN = ["--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--warmup-steps", "2", "--max-len", "64",
         "--tau-prompts", "0"]


def epoch_records(out) -> list[dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "epoch" in r]


def train(data, base, out, *extra):
    train_main.main(["--data", str(data), "--base-model-path", str(base), "--out", str(out), *TRAIN, *extra])


@pytest.mark.parametrize("variant", [[], ["--num-experts", "1", "--no-contrastive"], ["--draft-vocab-size", "20"],
                                     ["--rollout-steps", "3"], ["--num-experts", "1", "--no-contrastive", "--rollout-steps", "2"]])
def test_train_export_load_and_stay_lossless(tiny_data, tiny_base_dir, tmp_path, variant):
    out = tmp_path / "run"
    train(tiny_data, tiny_base_dir, out, *variant)
    records = epoch_records(out)
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        assert record["holdout_rollouts"] > 0 and 1.0 <= record["holdout_simulated_accept_length"] <= 6.0
        assert len(record["holdout_acc_per_step"]) == 5 and record["holdout_chain_read_out"] == "mix"
    steps = int(variant[variant.index("--rollout-steps") + 1]) if "--rollout-steps" in variant else 1
    assert all(r["rollout_steps_train"] == steps and r["train_tokens_per_second"] > 0 for r in records)
    head_config = json.loads((out / "head" / "config.json").read_text())
    assert head_config["method"] == ("eagle2" if variant[:2] == ["--num-experts", "1"] else "jakiro")
    ea = EaModel.from_pretrained(str(tiny_base_dir), str(out / "head"), total_token=12, depth=3, top_k=3)
    assert_greedy_matches_base(ea, tiny_base_dir, ["write a short poem about the sea"])


def test_training_reduces_holdout_loss(tiny_data, tiny_base_dir, tmp_path):
    out = tmp_path / "longer"
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(out),
                     "--epochs", "6", "--batch-size", "2", "--lr", "3e-3", "--warmup-steps", "2", "--max-len", "64"])
    records = epoch_records(out)
    assert records[-1]["holdout_loss"] < records[0]["holdout_loss"]


@pytest.mark.parametrize("rollout", [[], ["--rollout-steps", "3"]])
def test_resume_after_interruption_gives_the_same_head(tiny_data, tiny_base_dir, tmp_path, rollout):
    straight = tmp_path / "straight"
    train(tiny_data, tiny_base_dir, straight, *rollout)

    interrupted = tmp_path / "interrupted"
    # killed in the second epoch's held-out evaluation (after its training steps, before its checkpoint)
    with interrupted_on_call(recipe, "evaluate", 2), pytest.raises(KeyboardInterrupt):
        train(tiny_data, tiny_base_dir, interrupted, *rollout)
    assert not (interrupted / "head").exists()
    train(tiny_data, tiny_base_dir, interrupted, "--resume", *rollout)

    assert_same_weights(straight / "head", interrupted / "head")  # bit-identical
    assert epoch_records(straight)[-1]["holdout_loss"] == epoch_records(interrupted)[-1]["holdout_loss"]


def test_refuses_data_made_with_another_base(tiny_data, other_base_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_data, other_base_dir, tmp_path / "x")
    assert exit_info.value.code == 2
    assert "regenerate the data for this base" in capsys.readouterr().err


def test_refuses_to_overwrite_or_resume_with_other_settings(tiny_data, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "once"
    train(tiny_data, tiny_base_dir, out)
    with pytest.raises(SystemExit):
        train(tiny_data, tiny_base_dir, out)
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(tiny_data, tiny_base_dir, out, "--resume", "--num-experts", "1", "--no-contrastive")
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["missing-data", "bad-config", "missing-config"])
def test_bad_inputs_are_one_line_errors(tiny_data, tiny_base_dir, tmp_path, capsys, problem):
    args = ["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(tmp_path / "o")]
    if problem == "missing-data":
        args[1] = str(tmp_path / "nowhere")
    elif problem == "bad-config":
        (tmp_path / "c.json").write_text("{not json")
        args += ["--config", str(tmp_path / "c.json")]
    else:
        args += ["--config", str(tmp_path / "absent.json")]
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("error:")]


def test_model_card_reports_data_epochs_and_measurement(tiny_data, tiny_base_dir, tmp_path):
    from jakiro.train.model_card import main as write_card

    out = tmp_path / "carded"
    train(tiny_data, tiny_base_dir, out)
    write_card(["--head", str(out / "head"), "--run", str(out), "--data", str(tiny_data),
                "--mt-bench-tau", "2.5", "--mt-bench-settings", "tree 16/4/4", "--mt-bench-source", "r.json"])
    card = (out / "head" / "README.md").read_text()
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    assert f"{manifest['tokens']} tokens" in card and "Epochs: 2" in card
    assert "τ = **2.50**" in card and "tree 16/4/4" in card


def test_export_in_bf16_keeps_outputs_lossless(tiny_data, tiny_base_dir, tmp_path):
    from jakiro.train.export import main as export

    out = tmp_path / "bf16"
    train(tiny_data, tiny_base_dir, out)
    export(["--head", str(out / "head"), "--out", str(tmp_path / "shipped"), "--dtype", "bfloat16"])
    weights = load_file(str(tmp_path / "shipped" / "model.safetensors"))
    assert weights["fc.weight"].dtype == torch.bfloat16
    ea = EaModel.from_pretrained(str(tiny_base_dir), str(tmp_path / "shipped"), total_token=10, depth=3, top_k=3)
    assert_greedy_matches_base(ea, tiny_base_dir, ["tell me a story about a small robot"], max_new_tokens=16)


@pytest.mark.parametrize("value", ["0", "-2", "17", "two", "1.5"])
def test_bad_rollout_steps_are_one_line_errors_before_anything_is_written(tiny_data, tiny_base_dir, tmp_path, capsys,
                                                                          value):
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_data, tiny_base_dir, tmp_path / "never", "--rollout-steps", value)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rollout-steps" in err
    assert not (tmp_path / "never").exists()


def test_bad_rollout_decay_is_refused(tiny_data, tiny_base_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train(tiny_data, tiny_base_dir, tmp_path / "never", "--rollout-steps", "2", "--rollout-decay", "0")
    assert "--rollout-decay" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_run_from_before_the_rollout_fields_still_resumes(tiny_data, tiny_base_dir, tmp_path):
    out = tmp_path / "old"
    train(tiny_data, tiny_base_dir, out, "--epochs", "1")
    saved = json.loads((out / "run_config.json").read_text())
    for key in ("rollout_steps_train", "rollout_decay"):
        del saved["train"][key]
    saved["train"]["epochs"] = 2  # as if a 2-epoch run had been interrupted after its first epoch
    (out / "run_config.json").write_text(json.dumps(saved))
    train(tiny_data, tiny_base_dir, out, "--resume")
    assert [r["epoch"] for r in epoch_records(out)] == [0, 1]


def test_tau_by_tree_size_after_training_and_in_the_card(tiny_data, tiny_base_dir, tmp_path):
    from jakiro.train.model_card import main as write_card

    out = tmp_path / "tau"
    (tmp_path / "config.json").write_text(json.dumps({"train": {"holdout_fraction": 0.25}}))
    train(tiny_data, tiny_base_dir, out, "--rollout-steps", "2", "--tau-prompts", "2", "--tau-max-new-tokens", "6",
          "--tau-tree-sizes", "4,8", "--config", str(tmp_path / "config.json"))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tau = lines[-1]
    assert set(tau["tau_by_tree_size"]) == {"4", "8"}
    for size, details in tau["tau_details"].items():
        assert 1.0 <= details["tau"] <= 7.0 and details["rounds"] >= 1
        assert details["tau"] == pytest.approx(details["tokens_in_rounds"] / details["rounds"])
        assert tau["tau_by_tree_size"][size] == details["tau"]
        # the prefill makes each prompt's first token; rounds may make a few past the stop
        assert details["tokens_in_rounds"] + 2 >= details["new_tokens"] == tau["tau_details"]["4"]["new_tokens"]
        by_position = details["tau_by_answer_position"]
        assert sum(group["rounds"] for group in by_position.values()) == details["rounds"]
        assert set(by_position) == {"0-31"}  # 6 new tokens never leave the first bucket
    assert tau["same_output_for_every_tree_size"] is True
    assert 0.0 <= tau["repeated_4gram_fraction"] <= 1.0
    assert tau["tau_settings"]["prompts"] == 2 and tau["tau_settings"]["depth"] == 5
    write_card(["--head", str(out / "head"), "--run", str(out), "--data", str(tiny_data)])
    card = (out / "head" / "README.md").read_text()
    assert "τ by tree size" in card and "| tree nodes | 4 | 8 |" in card
    assert "rounds from answer token" not in card and "close a 4-gram" in card  # one bucket: no extra rows
    assert "Training-time rollout: 2 step(s)" in card and "| chain accuracy |" in card


def test_measure_tau_command_reads_held_out_prompts(tiny_data, tiny_base_dir, tmp_path, capsys):
    from jakiro.train.measure_tau import held_out_prompts, main as measure

    out = tmp_path / "m"
    train(tiny_data, tiny_base_dir, out, "--epochs", "1")
    measure(["--head", str(out / "head"), "--data", str(tiny_data), "--base-model-path", str(tiny_base_dir),
             "--run", str(out), "--prompts", "1", "--max-new-tokens", "4", "--tree-sizes", "16"])
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert list(record["tau_by_tree_size"]) == ["16"]
    prompt = held_out_prompts(tiny_data, 0.05, 1)[0]
    assert prompt.shape[0] == 1 and prompt.shape[1] > 0
    assert "cepd" not in record["tau_settings"]
    measure(["--head", str(out / "head"), "--data", str(tiny_data), "--base-model-path", str(tiny_base_dir),
             "--run", str(out), "--prompts", "1", "--max-new-tokens", "4", "--tree-sizes", "16", "--no-cepd"])
    without_level = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert without_level["tau_settings"]["cepd"] is False
    # greedy output never depends on the drafter: the same answer with and without the contrastive level
    assert without_level["tau_details"]["16"]["new_tokens"] == record["tau_details"]["16"]["new_tokens"]
    assert record["tau_settings"]["base_dtype"] == "float32"
    measure(["--head", str(out / "head"), "--data", str(tiny_data), "--base-model-path", str(tiny_base_dir),
             "--run", str(out), "--prompts", "1", "--max-new-tokens", "4", "--tree-sizes", "16", "--dtype", "bfloat16"])
    in_bf16 = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert in_bf16["tau_settings"]["base_dtype"] == "bfloat16" and in_bf16["tau_details"]["16"]["rounds"] >= 1
    with pytest.raises(SystemExit):
        measure(["--head", str(out / "head"), "--data", str(tiny_data), "--tree-sizes", "1,x"])
    assert "tree sizes" in capsys.readouterr().err


def test_init_head_starts_from_a_trained_head(tiny_data, tiny_base_dir, tmp_path):
    from jakiro.train.model_card import main as write_card

    first = tmp_path / "first"
    train(tiny_data, tiny_base_dir, first)
    # lr 1e-30: every update is below the weights' rounding, so the exported head is exactly the one it started from
    tuned = tmp_path / "tuned"
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(tuned),
                     "--epochs", "1", "--batch-size", "2", "--lr", "1e-30", "--warmup-steps", "1", "--max-len", "64",
                     "--tau-prompts", "0", "--init-head", str(first / "head")])
    assert_same_weights(first / "head", tuned / "head")
    assert epoch_records(tuned)[0]["init_head"] == str(first / "head")
    write_card(["--head", str(tuned / "head"), "--run", str(tuned), "--data", str(tiny_data)])
    assert f"the trained head `{first / 'head'}`" in (tuned / "head" / "README.md").read_text()
    fresh = tmp_path / "fresh"
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(fresh),
                     "--epochs", "1", "--batch-size", "2", "--lr", "1e-30", "--warmup-steps", "1", "--max-len", "64",
                     "--tau-prompts", "0"])
    with pytest.raises(AssertionError):
        assert_same_weights(first / "head", fresh / "head")  # the check above can fail


def test_init_head_of_another_shape_is_a_one_line_error(tiny_data, tiny_base_dir, tmp_path, capsys):
    eagle = tmp_path / "eagle"
    train(tiny_data, tiny_base_dir, eagle, "--num-experts", "1", "--no-contrastive")
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_data, tiny_base_dir, tmp_path / "jakiro", "--init-head", str(eagle / "head"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--init-head" in err and "does not fit this run's head" in err
    assert not (tmp_path / "jakiro" / "metrics.jsonl").exists()


def test_eval_only_reproduces_the_held_out_metrics_of_training(tiny_data, tiny_base_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_data, tiny_base_dir, run)
    trained, metrics = epoch_records(run)[-1], (run / "metrics.jsonl").read_text()
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(run),
                     "--max-len", "64", "--eval-only", "--init-head", str(run / "head")])
    record = json.loads((run / "holdout_eval.json").read_text())
    assert record["eval_only"] and record["head"] == str(run / "head")
    assert record["holdout_top1"] == pytest.approx(trained["holdout_top1"])
    assert record["holdout_loss"] == pytest.approx(trained["holdout_loss"], rel=1e-4)
    assert record["holdout_acc_per_step"] == pytest.approx(trained["holdout_acc_per_step"])
    assert (run / "metrics.jsonl").read_text() == metrics  # nothing was trained or recorded
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(tmp_path / "x"),
                         "--eval-only"])
    assert exit_info.value.code == 2 and "--init-head" in capsys.readouterr().err


def test_eval_only_can_read_more_of_the_held_out_split(tiny_data, tiny_base_dir, tmp_path):
    """--eval-sequences / --eval-starts widen the held-out measurement (every answer position of every held-out
    conversation), so a head's chain accuracy can be measured with less sampling noise than training's default."""
    run = tmp_path / "run"
    train(tiny_data, tiny_base_dir, run)
    common = ["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--max-len", "64", "--eval-only",
              "--init-head", str(run / "head")]
    train_main.main([*common, "--out", str(tmp_path / "few"), "--eval-sequences", "1", "--eval-starts", "2"])
    train_main.main([*common, "--out", str(tmp_path / "all"), "--eval-sequences", "1000", "--eval-starts", "0"])
    few = json.loads((tmp_path / "few" / "holdout_eval.json").read_text())
    every = json.loads((tmp_path / "all" / "holdout_eval.json").read_text())
    assert few["holdout_conversations"] == 1 and few["eval_starts"] == 2 and every["eval_starts"] == 0
    assert few["holdout_rollouts"] == 2 and every["holdout_rollouts"] > epoch_records(run)[-1]["holdout_rollouts"]
    with pytest.raises(SystemExit) as exit_info:
        train_main.main([*common, "--out", str(tmp_path / "bad"), "--eval-sequences", "0"])
    assert exit_info.value.code == 2


def test_rounds_are_grouped_by_where_they_start_in_the_answer():
    from jakiro.train.measure_tau import rounds_by_answer_position

    # token 0 comes from the prefill: rounds start at answer index 1, 3, 4, 6 with edges (0, 4)
    assert rounds_by_answer_position([2, 1, 2, 3], (0, 4)) == {"0-3": [2, 1], "4+": [2, 3]}


def test_repeated_ngrams_count_loops_only_within_one_answer():
    from jakiro.train.measure_tau import repeated_ngram_fraction

    assert repeated_ngram_fraction([[1, 2, 1, 2, 1, 2]], n=2) == pytest.approx(3 / 5)  # (2,1) once then all seen
    assert repeated_ngram_fraction([[1, 2, 3], [1, 2, 3]], n=2) == 0.0
    assert repeated_ngram_fraction([[1]], n=2) == 0.0


def test_card_rows_of_tau_by_answer_position():
    from jakiro.train.model_card import position_rows

    details = {"4": {"tau_by_answer_position": {"0-31": {"tau": 1.5, "rounds": 3}, "32-127": {"tau": 2.0, "rounds": 2}}},
               "8": {"tau_by_answer_position": {"0-31": {"tau": 1.6, "rounds": 3}}}}
    rows = position_rows({"tau_details": details, "repeated_4gram_fraction": 0.25}, ["4", "8"])
    assert "| τ, rounds from answer token 0-31 | 1.50 | 1.60 |" in rows
    assert "| τ, rounds from answer token 32-127 | 2.00 |  |" in rows and "25% of the answer tokens" in rows


def test_chain_by_position_command_on_a_trained_head(tiny_data, tiny_base_dir, tmp_path, capsys):
    from jakiro.train.chain_by_position import main as by_position

    out = tmp_path / "pos"
    (tmp_path / "config.json").write_text(json.dumps({"train": {"holdout_fraction": 0.25}}))
    train(tiny_data, tiny_base_dir, out, "--epochs", "1", "--config", str(tmp_path / "config.json"))
    by_position(["--head", str(out / "head"), "--data", str(tiny_data), "--base-model-path", str(tiny_base_dir),
                 "--holdout-fraction", "0.25", "--conversations", "2", "--steps", "2", "--buckets", "0,4",
                 "--json", str(tmp_path / "pos.json")])
    record = json.loads((tmp_path / "pos.json").read_text())
    assert [row["answer_tokens"] for row in record["by_answer_position"]] == ["0-3", "4+"]
    assert sum(row["rollouts"] for row in record["by_answer_position"]) > 0
    assert "answer tokens" in capsys.readouterr().out


def test_card_shows_one_tau_table_per_answer_length_shortest_first():
    from jakiro.train.model_card import tau_section

    def record(tokens, prompts, tau, **extra):
        return {"tau_by_tree_size": {"16": tau}, "tau_details": {},
                "tau_settings": {"depth": 5, "top_k": 8, "prompts": prompts, "max_new_tokens": tokens, **extra}}

    text = tau_section([record(1024, 16, 3.2), record(32, 6, 1.9), record(32, 12, 2.25),
                        record(1024, 16, 3.1, cepd=False)])
    tables = text.split("Greedy,")[1:]
    assert len(tables) == 3  # the 6-prompt 32-token record is replaced by the later one
    assert "32 new tokens" in tables[0] and "| τ | 2.25 |" in tables[0] and "12 held-out" in tables[0]
    assert "1024 new tokens" in tables[1] and "| τ | 3.20 |" in tables[1] and "--no-cepd" not in tables[1]
    assert "--no-cepd" in tables[2] and "| τ | 3.10 |" in tables[2]
    assert tau_section([]).startswith("not measured")
    from jakiro.model.budget import parse_card_tau

    assert parse_card_tau(text) == {16: 2.25}  # the auto tree reads the first table: the short answers' curve
    # a base model measured in bf16 is a table of its own, after the float32 one of the same length
    text = tau_section([record(32, 12, 2.25, base_dtype="float32"), record(32, 48, 2.66, base_dtype="bfloat16")])
    tables = text.split("Greedy,")[1:]
    assert len(tables) == 2 and "| τ | 2.25 |" in tables[0] and "--dtype" not in tables[0]
    assert "| τ | 2.66 |" in tables[1] and "the base model in bfloat16, `--dtype bfloat16`" in tables[1]
    assert parse_card_tau(text) == {16: 2.25}


def test_holdout_from_trains_on_the_rest_and_records_it(tiny_data, tiny_base_dir, tmp_path):
    from jakiro.ge_data.storage import read_manifest
    from jakiro.ge_data.subset import make_subset

    shards = len(read_manifest(tiny_data)["shards"])
    assert shards >= 2
    smaller = tmp_path / "smaller"
    make_subset(tiny_data, shards - 1, smaller)
    out = tmp_path / "fixed"
    train(tiny_data, tiny_base_dir, out, "--epochs", "1", "--holdout-from", str(smaller))
    assert epoch_records(out)[-1]["holdout_from"] == str(smaller)  # which conversations the metrics are on
    with pytest.raises(SystemExit):
        train(tiny_data, tiny_base_dir, tmp_path / "never", "--holdout-from", str(tmp_path / "missing"))
    assert not (tmp_path / "never" / "run_config.json").exists()
