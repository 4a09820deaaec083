"""What data generation says: skipped conversations by reason, and data of a same-architecture base of another name."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from jakiro.ge_data.allocation import main


def run(data_file, base, outdir, *extra):
    main(["--data-path", str(data_file), "--base-model-path", str(base), "--outdir", str(outdir),
          "--shard-size", "2", *extra])


def test_skipped_selected_conversations_are_counted_by_reason(data_file, tiny_base_dir, tmp_path, capsys):
    run(data_file, tiny_base_dir, tmp_path / "out")
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("wrote 4 conversations")
    assert out[-1] == ("skipped 1 of 5 selected conversations: 1 without an assistant reply "
                       "(pass --regenerate to answer them)")


def test_conversations_cut_by_max_length_are_counted(data_file, tiny_base_dir, tmp_path, capsys):
    run(data_file, tiny_base_dir, tmp_path / "short", "--max-length", "9")
    out = capsys.readouterr().out.splitlines()
    written = int(re.match(r"wrote (\d+) conversations", out[-2]).group(1))
    counts = re.match(r"skipped (\d+) of 5 selected conversations: 1 without an assistant reply \(.*\), "
                      r"(\d+) with no assistant token within --max-length 9$", out[-1])
    assert counts and int(counts.group(1)) == 5 - written == 1 + int(counts.group(2))


def test_skip_invalid_skips_a_malformed_json_line_as_its_help_says(tiny_base_dir, tmp_path, capsys):
    good = {"id": 2, "conversations": [{"from": "human", "value": "what is two plus two"},
                                       {"from": "gpt", "value": "two"}]}
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "conversations": [\n' + json.dumps(good) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        run(path, tiny_base_dir, tmp_path / "refused")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "line 1 is not valid JSON" in err[0]
    assert "--skip-invalid" in err[0] and not (tmp_path / "refused").exists()  # nothing written

    run(path, tiny_base_dir, tmp_path / "out", "--skip-invalid")
    out = capsys.readouterr().out
    assert "skipped 1 unusable item(s) of mixed.jsonl (--skip-invalid): 1 not valid JSON (mixed.jsonl line 1)" in out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["conversations"] == 1


def test_help_of_skip_invalid_names_malformed_lines(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "JSONL lines that are not valid JSON" in help_text


def test_resuming_with_a_same_architecture_base_of_another_name_warns(data_file, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "data"
    run(data_file, tiny_base_dir, out, "--max-samples", "2")
    renamed = shutil.copytree(tiny_base_dir, tmp_path / "renamed-base")
    shard = out / "shard_00000.safetensors"
    stamp = shard.stat().st_mtime_ns
    capsys.readouterr()
    run(data_file, renamed, out, "--max-samples", "2")
    err = capsys.readouterr().err
    assert f"holds data made for base model {str(tiny_base_dir)!r}, and {str(renamed)!r} has the same architecture" \
        in err
    assert shard.stat().st_mtime_ns == stamp  # finished shards are kept
    run(data_file, tiny_base_dir, out, "--max-samples", "2")
    assert "warning" not in capsys.readouterr().err
