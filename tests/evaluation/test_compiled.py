"""The hf-compiled baseline: `generate` with a static cache and a compiled forward gives `generate`'s tokens, swaps its
forward onto the shared model only while it runs, and keeps its compile cache under $JAKIRO_HOME."""

from __future__ import annotations

from pathlib import Path

import torch

from jakiro.evaluation.compiled import compile_cache_dir, use_disk_compile_cache
from jakiro.evaluation.contenders import CONTENDERS, Workbench
from jakiro.evaluation.engines import HFCompiledEngine, HFGenerateEngine, baseline_engine
from jakiro.model.sampling import SamplingConfig
from tests.utils import build_base, random_prompt


def test_compile_cache_lives_under_jakiro_home(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("JAKIRO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # torch writes its default back: not a choice
    assert compile_cache_dir() == tmp_path / "home" / "compile-cache"
    assert use_disk_compile_cache().is_dir()
    assert Path(torch._inductor.runtime.cache_dir_utils.cache_dir()) == tmp_path / "home" / "compile-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine", "a user's own inductor cache wins"


def test_compiled_generate_equals_generate_and_restores_the_model(capsys):
    base = build_base("llama")
    compiled, plain = HFCompiledEngine(base, set()), HFGenerateEngine(base, set())
    for seed in (0, 1):  # two prompt lengths: one dynamic graph serves both
        prompt = random_prompt(seed, base.config.vocab_size, low=3).tolist()[0]
        result = compiled.generate(prompt, SamplingConfig(), 8)
        assert result.tokens == plain.generate(prompt, SamplingConfig(), 8).tokens
        assert "forward" not in base.__dict__, "the compiled forward is swapped out after each call"
    assert "compiling LlamaForCausalLM.forward" in capsys.readouterr().err, "the first call says what it does"
    assert compiled.compiled.calls == 2 and compiled.settings()["cache_implementation"] == "static"
    assert compile_cache_dir().is_dir() and any(compile_cache_dir().iterdir())


def test_contender_and_baseline_engine_names():
    base = build_base("llama")
    assert isinstance(baseline_engine("hf-compiled", base, set()), HFCompiledEngine)
    bench = Workbench(base, None, set(), 8, 2, 2)
    assert CONTENDERS["hf-compiled"].build(bench).name == "hf-compiled"
