"""FastChat formats: FastChat's own templates (fschat) and the built-in copies give the same tokens.

Token for token means: the ids jakiro feeds the model equal ``tokenizer(conv.get_prompt()).input_ids``,
which is how FastChat, Vicuna's training and the original EAGLE/Jakiro data scripts tokenize.
"""

from __future__ import annotations

import fastchat.conversation
import pytest

import jakiro.templates as templates
from jakiro.templates import (TEMPLATES, encode_with_mask, render, render_builtin, render_fastchat,
                              render_generation_prompt)
from tests.helpers.sentencepiece_models import save_sentencepiece_tokenizer
from tests.helpers.tiny_models import build_tiny_tokenizer

TURNS = [
    {"role": "user", "content": "write a short poem about the sea"},
    {"role": "assistant", "content": "the sea and the sky,\nand the cat sat on the mat"},
    {"role": "user", "content": "now make it rhyme"},
    {"role": "assistant", "content": " the dog sat on the log "},
    {"role": "user", "content": "explain your answer step by step please"},
]
SYSTEM = {"role": "system", "content": "keep it short"}
CONVERSATIONS = {
    "three user turns": TURNS,
    "with a system message": [SYSTEM, *TURNS],
    "empty system message": [{"role": "system", "content": ""}, *TURNS],
}


@pytest.fixture(scope="module", params=["sentencepiece", "word-level"])
def tokenizer(request, tmp_path_factory):
    if request.param == "word-level":
        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    folder = save_sentencepiece_tokenizer(tmp_path_factory.mktemp("spm"))
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def fastchat_prompt(messages, template: str, open_answer: bool) -> str:
    """What FastChat itself renders (the names and default system prompts of the original recipes)."""
    conv = fastchat.conversation.get_conv_template(templates.FASTCHAT_NAMES[template])
    system = messages[0]["content"] if messages[0]["role"] == "system" else templates.DEFAULT_SYSTEMS[template]
    conv.set_system_message(system)
    turns = [m for m in messages if m["role"] != "system"]
    for i, message in enumerate(turns):
        conv.append_message(conv.roles[i % 2], message["content"])
    if open_answer:
        conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_generation_prompts_equal_fastchat_token_for_token(tokenizer, template, name):
    messages = CONVERSATIONS[name]
    expected_text = fastchat_prompt(messages, template, open_answer=True)
    expected_ids = tokenizer(expected_text).input_ids
    assert render_fastchat(tokenizer, messages, template, True) == expected_text
    assert render_builtin(tokenizer, messages, template, True) == expected_text
    assert render_generation_prompt(tokenizer, messages, template) == expected_ids
    builtin_ids = tokenizer(render_builtin(tokenizer, messages, template, True)).input_ids
    assert builtin_ids == expected_ids
    assert expected_ids.count(tokenizer.eos_token_id) == 2  # the two finished answers end with EOS


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_training_conversations_equal_fastchat_token_for_token(tokenizer, template, name):
    messages = CONVERSATIONS[name][:-1]  # ends with an answer, as training data does
    expected_text = fastchat_prompt(messages, template, open_answer=False)
    assert render_builtin(tokenizer, messages, template, False) == expected_text
    assert render(tokenizer, messages, template, False) == expected_text
    ids, mask = encode_with_mask(tokenizer, messages, template)
    assert ids == tokenizer(expected_text).input_ids
    assert sum(mask) > 0 and mask[0] == 0


def test_render_uses_fastchat_when_installed(tokenizer, monkeypatch):
    calls = []
    real = fastchat.conversation.get_conv_template

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(fastchat.conversation, "get_conv_template", spy)
    render(tokenizer, TURNS, "llama-2-chat", True)
    render(tokenizer, TURNS, "vicuna_v1.1", True)
    assert calls == ["llama-2", "vicuna_v1.1"]


def test_without_fastchat_the_builtin_copy_renders_the_same(tokenizer, monkeypatch):
    with_fastchat = {t: render_generation_prompt(tokenizer, TURNS, t) for t in TEMPLATES}
    monkeypatch.setattr(templates, "fastchat_available", lambda: False)
    assert render_fastchat(tokenizer, TURNS, "vicuna_v1.1", True) is None
    assert {t: render_generation_prompt(tokenizer, TURNS, t) for t in TEMPLATES} == with_fastchat


def test_conversations_fastchat_cannot_express_fall_back_to_the_builtin_copy(tokenizer):
    two_users = [{"role": "user", "content": "hello"}, {"role": "user", "content": "tell me a story"}]
    assert render_fastchat(tokenizer, two_users, "vicuna_v1.1", True) is None
    text = render(tokenizer, two_users, "vicuna_v1.1", True)
    assert text.endswith("USER: hello USER: tell me a story ASSISTANT:")
