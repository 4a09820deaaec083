"""The shipped heads load by alias on the embedded default model, keep greedy output identical, and accept drafts."""

from __future__ import annotations

import pytest
import torch

from jakiro import EaModel
from jakiro.chat import prompt_ids
from jakiro.errors import CheckpointError
from jakiro.heads import HEAD_ALIASES, resolve_head_path
from jakiro.methods import load_head, new_head


def accept_length(head: str, prompt: str = "Why is the sky blue?") -> tuple[float, bool]:
    """Mean accepted length of ``head`` on the default model (greedy, 32 tokens), and whether the output is the base model's."""
    ea = EaModel.from_pretrained("smollm2-135m-instruct", head, total_token=16, depth=4, top_k=4)
    ids = torch.tensor([prompt_ids(ea.get_tokenizer(), [{"role": "user", "content": prompt}])])
    out = ea.eagenerate(ids, max_new_tokens=32)
    same = torch.equal(out, ea.base_model.generate(ids, do_sample=False, max_new_tokens=32))
    return ea.last_stats.mean_accept_length, same


@pytest.mark.slow
@pytest.mark.parametrize("alias", sorted(HEAD_ALIASES))
def test_shipped_head_is_lossless_and_accepts_drafts(alias, tmp_path):
    pytest.importorskip("gguf", reason="LOUD: gguf missing, the embedded default model cannot be converted")
    trained, same = accept_length(alias)
    assert same, "greedy output equals the base model's"
    # the same head freshly initialised (same method and shapes) accepts next to nothing: training must beat it
    torch.manual_seed(0)
    new_head(load_head(resolve_head_path(alias)).config).save_pretrained(tmp_path / "fresh")
    fresh, _ = accept_length(str(tmp_path / "fresh"))
    assert trained > 1.05 and trained > fresh + 0.05, f"a trained head accepts drafts ({trained:.3f} vs fresh {fresh:.3f})"
    assert (resolve_head_path(alias) / "README.md").is_file(), "every shipped head has a model card"


def test_unknown_head_alias_is_a_clear_error():
    with pytest.raises(CheckpointError, match="not found"):
        resolve_head_path("no-such-head")
