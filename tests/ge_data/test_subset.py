"""A subset folder views the first N shards of a data folder and trains like any data folder."""

from __future__ import annotations

import json

import pytest

from jakiro.errors import ConfigError
from jakiro.ge_data.allocation import main as generate
from jakiro.ge_data.storage import list_shards, read_manifest
from jakiro.ge_data.subset import main, make_subset
from jakiro.train.dataset import split_entries


@pytest.fixture
def data(data_file, tiny_base_dir, tmp_path):
    out = tmp_path / "data"
    generate(["--data-path", str(data_file), "--base-model-path", str(tiny_base_dir), "--outdir", str(out),
              "--shard-size", "2"])
    return out


def test_subset_takes_the_first_shards_with_their_counts(data, tmp_path):
    source = read_manifest(data)
    assert len(source["shards"]) >= 3
    out = tmp_path / "first2"
    manifest = make_subset(data, 2, out)
    assert manifest["shards"] == source["shards"][:2] and manifest["complete"]
    kept = list_shards(out)
    assert [s.path.name for s in kept] == source["shards"][:2]
    assert all(s.path.resolve() == (data / s.path.name).resolve() for s in kept)
    assert manifest["conversations"] == sum(len(s) for s in kept)
    assert manifest["tokens"] == sum(int(s.offsets[-1]) for s in kept) < source["tokens"]
    assert manifest["base_fingerprint"] == source["base_fingerprint"] and manifest["subset_shards"] == 2
    train, holdout, _ = split_entries(out, 0.5)  # the subset trains like a generated folder
    assert len(train) + len(holdout) == manifest["conversations"]
    assert make_subset(data, 2, out) == manifest  # the same request again: nothing changes


def test_subset_refuses_bad_requests_in_one_line(data, tmp_path, capsys):
    count = len(read_manifest(data)["shards"])
    with pytest.raises(ConfigError, match="fewer than --shards"):
        make_subset(data, count + 1, tmp_path / "too_many")
    with pytest.raises(ConfigError, match="at least 1"):
        make_subset(data, 0, tmp_path / "none")
    make_subset(data, 1, tmp_path / "one")
    with pytest.raises(ConfigError, match="already holds other data"):
        make_subset(data, 2, tmp_path / "one")
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "missing"), "--shards", "1", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_cli_prints_what_it_wrote(data, tmp_path, capsys):
    main(["--data", str(data), "--shards", "1", "--out", str(tmp_path / "one")])
    out = capsys.readouterr().out
    assert "first 1 shard(s)" in out
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["subset_of"] == str(data.resolve())


def test_subset_refuses_a_gap_left_by_parallel_workers(data, tmp_path):
    manifest = read_manifest(data)
    manifest["shards"] = [name for name in manifest["shards"] if name != "shard_00001.safetensors"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "shard_00001.safetensors").unlink()
    make_subset(data, 1, tmp_path / "first1")  # before the gap: fine
    with pytest.raises(ConfigError, match="lacks shard_00001"):
        make_subset(data, 2, tmp_path / "first2")
