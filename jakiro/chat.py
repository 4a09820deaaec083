"""Conversation -> prompt token ids, shared by data generation, evaluation and the chat interfaces.

Messages are ``{"role": "system"|"user"|"assistant", "content": str}`` dicts. ``template=None``
uses the tokenizer's own chat template.
"""

from __future__ import annotations

from .errors import ConfigError

Message = dict[str, str]


def prompt_ids(tokenizer, messages: list[Message], template: str | None = None) -> list[int]:
    """Token ids of the conversation followed by the assistant's turn header (generation prompt)."""
    if not messages:
        raise ConfigError("the conversation is empty: pass at least one user message")
    if template is None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("this tokenizer has no chat template: pass a template name (e.g. vicuna_v1.1)")
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    from .templates import render_generation_prompt

    return render_generation_prompt(tokenizer, messages, template)
