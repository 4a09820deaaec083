"""Chat templates with assistant loss masks.

A conversation is rendered to text once, tokenized once (with character offsets), and every token
overlapping an assistant reply or the end-of-turn token that closes it gets mask 1. Tokenizing the
whole text (rather than pieces) keeps ids identical to what the model sees at inference.

Templates: ``None`` = the tokenizer's own chat template; ``vicuna_v1.1`` and ``llama-2-chat`` are
FastChat's conversation formats (the original Vicuna / LLaMA-2-chat recipes). When ``fschat`` is
installed, FastChat's own templates render them; otherwise the built-in copies below do (the tests
check both give the same tokens). Like FastChat, a FastChat-format text is tokenized with the
tokenizer's own special tokens (its BOS), exactly as the original training and inference did.
"""

from __future__ import annotations

import re

from .errors import ConfigError

Message = dict[str, str]

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAMA2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information.")
TEMPLATES = ("vicuna_v1.1", "llama-2-chat")
DEFAULT_SYSTEMS = {"vicuna_v1.1": VICUNA_SYSTEM, "llama-2-chat": LLAMA2_SYSTEM}  # EAGLE's data recipe for LLaMA-2
FASTCHAT_NAMES = {"vicuna_v1.1": "vicuna_v1.1", "llama-2-chat": "llama-2"}  # FastChat's names of these formats


def _system_and_turns(messages: list[Message], default_system: str) -> tuple[str, list[Message]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return default_system, messages


def _render_vicuna(messages: list[Message], add_generation_prompt: bool, eos: str) -> str:
    system, turns = _system_and_turns(messages, VICUNA_SYSTEM)
    text = system + " "
    for message in turns:
        if message["role"] == "user":
            text += f"USER: {message['content']} "
        else:
            text += f"ASSISTANT: {message['content']}{eos}"
    return text + ("ASSISTANT:" if add_generation_prompt else "")


def _render_llama2(messages: list[Message], add_generation_prompt: bool, eos: str, bos: str) -> str:
    system, turns = _system_and_turns(messages, LLAMA2_SYSTEM)
    text, first = "", True
    for message in turns:
        if message["role"] == "user":
            content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{message['content']}" if first and system else message["content"]
            text += f"[INST] {content} [/INST]"
            first = False
        else:  # FastChat's separator after an answer is " </s><s>": the next turn's BOS comes with it
            text += f" {message['content']} {eos}{bos}"
    return text


def fastchat_available() -> bool:
    """Whether FastChat's conversation templates can be imported (``pip install --no-deps fschat``)."""
    try:
        import fastchat.conversation  # noqa: F401
    except ImportError:
        return False
    return True


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise ConfigError(f"unknown chat template {template!r}: use the tokenizer's own (default) or one of "
                          f"{TEMPLATES}")


def render_builtin(tokenizer, messages: list[Message], template: str, add_generation_prompt: bool) -> str:
    """A FastChat format rendered by this module's own copy (separators: the tokenizer's EOS and BOS)."""
    _check_template(template)
    eos, bos = tokenizer.eos_token or "</s>", tokenizer.bos_token or "<s>"
    if template == "vicuna_v1.1":
        return _render_vicuna(messages, add_generation_prompt, eos)
    return _render_llama2(messages, add_generation_prompt, eos, bos)


def render_fastchat(tokenizer, messages: list[Message], template: str, add_generation_prompt: bool) -> str | None:
    """The same conversation rendered by FastChat's own template, or None where FastChat cannot render it.

    FastChat hard-codes ``</s>`` / ``<s>`` as separators and assigns roles by position, so a tokenizer
    with other special tokens, a conversation whose turns do not alternate user/assistant, or an
    empty message (FastChat's marker of the open answer) is left to the built-in copy."""
    _check_template(template)
    if not fastchat_available() or tokenizer.eos_token != "</s>" or (
            template == "llama-2-chat" and tokenizer.bos_token != "<s>"):
        return None
    from fastchat.conversation import get_conv_template

    system, turns = _system_and_turns(messages, DEFAULT_SYSTEMS[template])
    expected = ("user", "assistant")
    if any(m["role"] != expected[i % 2] or not m["content"] for i, m in enumerate(turns)):
        return None
    if add_generation_prompt and len(turns) % 2 == 0:
        return None
    conversation = get_conv_template(FASTCHAT_NAMES[template])
    conversation.set_system_message(system)
    for i, message in enumerate(turns):
        conversation.append_message(conversation.roles[i % 2], message["content"])
    if add_generation_prompt:
        conversation.append_message(conversation.roles[1], None)
    return conversation.get_prompt()


def render(tokenizer, messages: list[Message], template: str | None, add_generation_prompt: bool) -> str:
    """The conversation as text; tokenize it with `tokenize_rendered` (which knows about special tokens)."""
    if template is None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("this tokenizer has no chat template: pass --chat-template vicuna_v1.1 or llama-2-chat")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = render_fastchat(tokenizer, messages, template, add_generation_prompt)
    return render_builtin(tokenizer, messages, template, add_generation_prompt) if text is None else text


def tokenize_rendered(tokenizer, text: str, template: str | None, **options):
    """Tokenize a rendered conversation: a tokenizer's own template already holds its special tokens; a
    FastChat format gets them from the tokenizer (its BOS), as FastChat's ``tokenizer(prompt)`` does."""
    return tokenizer(text, add_special_tokens=template is not None, **options)


def render_generation_prompt(tokenizer, messages: list[Message], template: str | None) -> list[int]:
    text = render(tokenizer, messages, template, add_generation_prompt=True)
    return list(tokenize_rendered(tokenizer, text, template)["input_ids"])


def _stop_strings(tokenizer, stop_ids: set[int] | None) -> list[str]:
    ids = set(stop_ids or ())
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted({tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None}, key=len, reverse=True)


def encode_with_mask(tokenizer, messages: list[Message], template: str | None = None,
                     stop_ids: set[int] | None = None, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and a mask with 1 exactly on assistant replies + their end-of-turn."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("loss masks need a fast tokenizer (character offsets): load the model's tokenizer.json")
    text = render(tokenizer, messages, template, add_generation_prompt=False)
    stops = _stop_strings(tokenizer, stop_ids)
    stop_pattern = re.compile(r"\s*(" + "|".join(re.escape(s) for s in stops) + ")") if stops else None
    spans, cursor = [], 0
    for message in messages:
        if message["role"] != "assistant":
            continue
        content = message["content"].strip()
        start = text.find(content, cursor)
        if start < 0 or not content:
            raise ConfigError("an assistant reply is missing from the rendered conversation: check the chat template")
        end = start + len(content)
        match = stop_pattern.match(text, end) if stop_pattern else None
        if match:
            end = match.end()
        spans.append((start, end))
        cursor = end
    encoded = tokenize_rendered(tokenizer, text, template, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    mask = [0] * len(ids)
    span_index = 0
    for i, (tok_start, tok_end) in enumerate(offsets):
        while span_index < len(spans) and spans[span_index][1] <= tok_start:
            span_index += 1
        if span_index < len(spans) and tok_end > tok_start and tok_end > spans[span_index][0]:
            mask[i] = 1
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask
