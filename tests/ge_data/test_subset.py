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


def test_holdout_from_a_smaller_view_stays_fixed_as_the_data_grows(data, tmp_path):
    source = read_manifest(data)
    assert len(source["shards"]) >= 3
    smaller = tmp_path / "first2"
    make_subset(data, 2, smaller)
    _, fixed, _ = split_entries(smaller, 0.25)
    train, holdout, _ = split_entries(data, 0.25, holdout_from=smaller)
    key = lambda entry: (entry[0].resolve(), entry[1], entry[2])  # noqa: E731
    assert [key(e) for e in holdout] == [key(e) for e in fixed]  # the smaller view's held-out conversations
    assert not {key(e) for e in train} & {key(e) for e in holdout}  # never trained on
    own_train, own_holdout, _ = split_entries(data, 0.25)
    assert len(train) + len(holdout) == len(own_train) + len(own_holdout)  # everything else trains
    assert {key(e) for e in own_holdout} - {key(e) for e in holdout}  # the folder's own split would differ


def test_holdout_from_refuses_data_that_lacks_those_conversations(data, data_file, tiny_base_dir, tmp_path):
    other = tmp_path / "other"  # the same conversations regenerated into other files: not a view of ``data``
    generate(["--data-path", str(data_file), "--base-model-path", str(tiny_base_dir), "--outdir", str(other),
              "--shard-size", "2"])
    with pytest.raises(ConfigError, match="--holdout-from needs a data folder that contains"):
        split_entries(data, 0.25, holdout_from=other)
    with pytest.raises(ConfigError, match="no manifest.json"):
        split_entries(data, 0.25, holdout_from=tmp_path / "missing")


def test_shard_ranges_view_the_chosen_shards(data, tmp_path, capsys):
    source = read_manifest(data)
    manifest = make_subset(data, [1, 2], tmp_path / "later")
    assert manifest["shards"] == source["shards"][1:3] and manifest["subset_indices"] == [1, 2]
    assert manifest["conversations"] == sum(len(s) for s in list_shards(tmp_path / "later"))
    main(["--data", str(data), "--shard-ranges", "0,2", "--out", str(tmp_path / "gap")])
    assert "2 chosen shard(s)" in capsys.readouterr().out
    assert read_manifest(tmp_path / "gap")["shards"] == [source["shards"][0], source["shards"][2]]
    with pytest.raises(ConfigError, match="lacks shard_00099"):
        make_subset(data, [0, 99], tmp_path / "missing")
