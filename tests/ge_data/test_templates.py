"""Loss masks: the masked tokens of every template decode to exactly the assistant replies (+ end of turn)."""

from __future__ import annotations

import pytest

from jakiro.errors import ConfigError
from jakiro.templates import TEMPLATES, encode_with_mask
from tests.helpers.tiny_models import build_tiny_tokenizer

MESSAGES = [
    {"role": "user", "content": "write a short poem about the sea"},
    {"role": "assistant", "content": "the sea and the sky"},
    {"role": "user", "content": "now make it rhyme"},
    {"role": "assistant", "content": "the cat sat on the mat"},
]


def masked_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    runs, current = [], []
    for token, flag in zip(ids, mask):
        if flag:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def check_mask(tokenizer, template, messages=MESSAGES):
    ids, mask = encode_with_mask(tokenizer, messages, template)
    runs = masked_runs(ids, mask)
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(runs) == len(replies)
    for run, reply in zip(runs, replies):
        assert run[-1] == tokenizer.eos_token_id, "each reply's end-of-turn token is supervised"
        assert tokenizer.decode(run, skip_special_tokens=True).strip() == reply
    assert sum(mask) == sum(len(r) for r in runs)


@pytest.mark.parametrize("template", [None, *TEMPLATES])
def test_tiny_tokenizer_masks(template):
    check_mask(build_tiny_tokenizer(), template)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    pytest.importorskip("gguf", reason="LOUD: gguf missing, the embedded default model cannot be converted")
    from transformers import AutoTokenizer

    from jakiro.base_models import resolve_base_model_path

    return AutoTokenizer.from_pretrained(resolve_base_model_path("smollm2-135m-instruct"))


@pytest.mark.parametrize("template", [None, *TEMPLATES])
def test_real_bpe_tokenizer_masks(smollm2_tokenizer, template):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi there, who are you?"},
                {"role": "assistant", "content": "Hello! I'm a helpful assistant.\nHow can I help?"},
                {"role": "user", "content": "Tell me a joke."},
                {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."}]
    check_mask(smollm2_tokenizer, template, messages)


def test_max_length_truncates_ids_and_mask_together():
    ids, mask = encode_with_mask(build_tiny_tokenizer(), MESSAGES, None, max_length=7)
    assert len(ids) == len(mask) == 7


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown chat template"):
        encode_with_mask(build_tiny_tokenizer(), MESSAGES, "alpaca")
