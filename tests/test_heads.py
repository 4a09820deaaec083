"""The shipped heads load by alias on the embedded default model, keep greedy output identical, and accept drafts."""

from __future__ import annotations

import pytest
import torch

from jakiro import EaModel
from jakiro.chat import prompt_ids
from jakiro.errors import CheckpointError
from jakiro.heads import HEAD_ALIASES, resolve_head_path


@pytest.mark.slow
@pytest.mark.parametrize("alias", sorted(HEAD_ALIASES))
def test_shipped_head_is_lossless_and_accepts_drafts(alias):
    pytest.importorskip("gguf", reason="LOUD: gguf missing, the embedded default model cannot be converted")
    ea = EaModel.from_pretrained("smollm2-135m-instruct", alias, total_token=16, depth=4, top_k=4)
    tokenizer = ea.get_tokenizer()
    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": "Why is the sky blue?"}])])
    out = ea.eagenerate(ids, max_new_tokens=32)
    assert torch.equal(out, ea.base_model.generate(ids, do_sample=False, max_new_tokens=32))
    assert ea.last_stats.mean_accept_length > 1.2, "a trained head accepts drafts"
    assert (resolve_head_path(alias) / "README.md").is_file(), "every shipped head has a model card"


def test_unknown_head_alias_is_a_clear_error():
    with pytest.raises(CheckpointError, match="not found"):
        resolve_head_path("no-such-head")
