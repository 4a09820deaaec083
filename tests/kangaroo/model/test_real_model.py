"""Kangaroo on the embedded default model (SmolLM2-135M-Instruct, 30 layers): lossless with the real weights."""

from __future__ import annotations

import pytest
import torch

from jakiro.chat import prompt_ids
from jakiro.model.ea_model import EaModel
from kangaroo.model.adapter import new_adapter


@pytest.mark.slow
def test_untrained_adapter_on_smollm2_is_lossless():
    pytest.importorskip("gguf", reason="LOUD: gguf missing, the embedded default model cannot be converted")
    from jakiro import load_base_model

    base, tokenizer = load_base_model("smollm2-135m-instruct", torch_dtype="float32")
    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": "Why is the sky blue?"}])])
    expected = base.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24)
    for exit_layer, options in ((2, dict(threshold=0.0, steps=4)), (4, dict(threshold=0.0, steps=3, tree_levels=2))):
        ea = EaModel(base, new_adapter(base, seed=0, exit_layer=exit_layer), tokenizer, **options)
        assert torch.equal(ea.eagenerate(ids, max_new_tokens=24), expected), f"exit layer {exit_layer}"
        assert ea.drafter.counts["nodes"] >= ea.drafter.counts["rounds"] * 3  # it really drafted every round
