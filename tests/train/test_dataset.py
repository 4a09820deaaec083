"""Data made for a base model of another name but the same architecture: accepted with a warning naming both."""

from __future__ import annotations

import shutil

import pytest

import jakiro.train.main as train_main
from jakiro.errors import ConfigError
from jakiro.ge_data.storage import read_manifest
from jakiro.model.configs import base_fingerprint
from jakiro.train.dataset import check_data_matches_base


def test_another_name_with_the_same_architecture_warns_with_both_names(llama_base, capsys):
    manifest = {"base_model": "vicuna-7b-v1.3", "base_fingerprint": base_fingerprint(llama_base.config)}
    config = llama_base.config.__class__.from_dict(llama_base.config.to_dict())
    config.name_or_path = "my-finetuned-vicuna"
    check_data_matches_base(manifest, config, "data/vicuna")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: data in data/vicuna was made for base model "
                                               "'vicuna-7b-v1.3', not 'my-finetuned-vicuna'")
    config.name_or_path = "vicuna-7b-v1.3"
    check_data_matches_base(manifest, config, "data/vicuna")
    assert capsys.readouterr().err == ""


def test_another_architecture_is_still_refused(llama_base, qwen2_base):
    manifest = {"base_model": "a", "base_fingerprint": base_fingerprint(llama_base.config)}
    with pytest.raises(ConfigError, match="architecture differs"):
        check_data_matches_base(manifest, qwen2_base.config, "data/a")


def test_training_on_data_of_a_renamed_base_warns(tiny_data, tiny_base_dir, tmp_path, capsys):
    renamed = shutil.copytree(tiny_base_dir, tmp_path / "renamed-base")
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(renamed), "--out", str(tmp_path / "o"),
                     "--epochs", "1", "--max-steps", "1", "--batch-size", "2", "--max-len", "32", "--tau-prompts", "0"])
    err = capsys.readouterr().err
    assert (tmp_path / "o" / "head" / "model.safetensors").is_file()  # accepted: the head was trained
    assert f"was made for base model {read_manifest(tiny_data)['base_model']!r}, not {str(renamed)!r}" in err
