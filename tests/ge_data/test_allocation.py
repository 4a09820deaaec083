"""Data generation end to end on a tiny model: shards, manifest, resume, refusal, bad inputs."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from jakiro.ge_data.allocation import main
from jakiro.ge_data.storage import list_shards


def run(data_file, base, outdir, *extra):
    main(["--data-path", str(data_file), "--base-model-path", str(base), "--outdir", str(outdir),
          "--shard-size", "2", *extra])


def test_generates_shards_with_features_and_masks(data_file, tiny_base_dir, tmp_path):
    from jakiro import load_base_model

    out = tmp_path / "data"
    run(data_file, tiny_base_dir, out, "--save-layers", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["conversations"] == 4  # "c" has no reply and is skipped
    assert manifest["base_model"] == str(tiny_base_dir) and manifest["save_layers"] == [1]
    model, _ = load_base_model(str(tiny_base_dir))
    shard = load_file(str(out / manifest["shards"][0]))
    offsets = shard["offsets"].tolist()
    ids = shard["input_ids"][offsets[0]:offsets[1]].long()[None]
    with torch.no_grad():
        out_states = model.get_decoder()(input_ids=ids, output_hidden_states=True)
    assert shard["hidden_state"].dtype == torch.bfloat16
    torch.testing.assert_close(shard["hidden_state"][offsets[0]:offsets[1]].float(), out_states.last_hidden_state[0],
                               atol=0.02, rtol=0.02)
    torch.testing.assert_close(shard["hidden_state_layer1"][offsets[0]:offsets[1]].float(), out_states.hidden_states[1][0],
                               atol=0.02, rtol=0.02)
    assert manifest["tokens"] == sum(int(s.offsets[-1]) for s in list_shards(out))
    assert all(shard["loss_mask"].sum() > 0 for shard in [shard])


def test_regenerate_fills_prompt_only_conversations(data_file, tiny_base_dir, tmp_path):
    out = tmp_path / "regen"
    run(data_file, tiny_base_dir, out, "--regenerate", "--max-new-tokens", "6", "--max-turns", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conversations"] == 5 and manifest["regenerate"]


def test_rerun_resumes_and_keeps_finished_shards(data_file, tiny_base_dir, tmp_path):
    out = tmp_path / "resume"
    run(data_file, tiny_base_dir, out)
    first = out / "shard_00000.safetensors"
    second = out / "shard_00001.safetensors"
    reference = load_file(str(second))
    stamp = first.stat().st_mtime_ns
    second.unlink()  # as if the run had been interrupted before this shard was written
    (out / "manifest.json").unlink()
    run(data_file, tiny_base_dir, out)
    assert first.stat().st_mtime_ns == stamp, "a finished shard is not redone"
    again = load_file(str(second))
    assert set(again) == set(reference)
    for key in reference:
        assert torch.equal(again[key], reference[key])
    assert not list(out.glob("*.tmp"))


def test_refuses_data_of_another_base(data_file, tiny_base_dir, other_base_dir, tmp_path, capsys):
    out = tmp_path / "mixed"
    run(data_file, tiny_base_dir, out)
    with pytest.raises(SystemExit) as exit_info:
        run(data_file, other_base_dir, out)
    assert exit_info.value.code == 2
    assert "made with base model" in capsys.readouterr().err


@pytest.mark.parametrize("first, second, setting", [
    (["--max-samples", "4"], ["--max-samples", "2"], "num_conversations"),  # shrinking would orphan shards
    (["--max-samples", "3"], ["--max-samples", "4"], "num_conversations"),  # the old last shard was not full
    (["--max-samples", "2"], ["--max-samples", "2", "--max-length", "64"], "max_length"),
])
def test_refuses_changed_settings_on_resume(data_file, tiny_base_dir, tmp_path, capsys, first, second, setting):
    out = tmp_path / "settings"
    run(data_file, tiny_base_dir, out, *first)
    os.remove(out / "manifest.json")
    with pytest.raises(SystemExit):
        run(data_file, tiny_base_dir, out, *second)
    err = capsys.readouterr().err
    assert "rerun with the same settings" in err and f"{setting}=" in err


def test_a_larger_max_samples_grows_the_plan_and_keeps_finished_shards(data_file, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "grow"
    run(data_file, tiny_base_dir, out, "--max-samples", "2")
    first = out / "shard_00000.safetensors"
    stamp = first.stat().st_mtime_ns
    run(data_file, tiny_base_dir, out, "--max-samples", "4")
    assert "growing grow: 2 -> 4 conversations (1 -> 2 shards)" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp, "a finished shard is not redone"
    plan = json.loads((out / "plan.json").read_text())
    assert plan["num_shards"] == 2 and (out / "shard_00001.safetensors").is_file()


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ('{"id": 1, "conversations": [\n', "not valid JSON"),
    ('{"id": 1, "conversations": []}\n', "conversation is empty"),
    ('{"id": 1, "turns": []}\n', "'conversations' list"),
    ('[{"id": 1, "conversations": [{"from": "alien", "value": "x"}]}]', "unknown speaker"),
])
def test_bad_inputs_give_one_line_errors(tiny_base_dir, tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run(path, tiny_base_dir, tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_skip_invalid_drops_empty_conversations(tiny_base_dir, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "conversations": []}\n'
                    '{"id": 2, "conversations": [{"from": "human", "value": "what is two plus two"},'
                    ' {"from": "gpt", "value": "two"}]}\n')
    run(path, tiny_base_dir, tmp_path / "out", "--skip-invalid")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["conversations"] == 1


def test_only_shards_writes_just_those_and_a_rerun_fills_in_the_rest(data_file, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "data"
    run(data_file, tiny_base_dir, out, "--only-shards", "1")
    assert "skipped" not in capsys.readouterr().out  # no skip count for a partial run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == ["shard_00001.safetensors"] and not manifest["complete"]
    first = (out / "shard_00001.safetensors").read_bytes()
    run(data_file, tiny_base_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["shards"] == [f"shard_0000{i}.safetensors" for i in range(3)]
    assert (out / "shard_00001.safetensors").read_bytes() == first  # the rerun kept it


@pytest.mark.parametrize("ranges, message", [("x-2", "expected shard indices"), ("3-1", "not a range"),
                                             ("0-9", "the plan has shards 0-2 only")])
def test_only_shards_refuses_bad_ranges_in_one_line(data_file, tiny_base_dir, tmp_path, capsys, ranges, message):
    with pytest.raises(SystemExit) as exit_info:
        run(data_file, tiny_base_dir, tmp_path / "data", "--only-shards", ranges)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_interrupted_run_says_how_to_resume(data_file, tiny_base_dir, tmp_path, capsys, monkeypatch):
    import jakiro.ge_data.allocation as allocation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(allocation, "run_worker", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        run(data_file, tiny_base_dir, tmp_path / "stopped")
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and err.count("\n") == 1
