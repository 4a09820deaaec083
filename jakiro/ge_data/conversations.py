"""Read ShareGPT-style conversations (a JSON list or JSONL) into role/content messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
         "bard": "assistant", "bing": "assistant", "system": "system"}


@dataclass
class Conversation:
    id: str
    messages: list[dict[str, str]]

    @property
    def has_reply(self) -> bool:
        return any(m["role"] == "assistant" for m in self.messages)


def _parse_item(item, where: str) -> Conversation:
    if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
        raise ConfigError(f"{where}: expected an object with a 'conversations' list (ShareGPT format)")
    messages = []
    for turn in item["conversations"]:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ConfigError(f"{where}: every turn needs 'from' and 'value'")
        role = ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ConfigError(f"{where}: unknown speaker {turn['from']!r} (expected human/gpt/system)")
        messages.append({"role": role, "content": str(turn["value"])})
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    while turns and turns[0]["role"] != "user":  # a reply with no question teaches nothing
        turns = turns[1:]
    if not turns:
        raise ConfigError(f"{where}: the conversation is empty (no user turn); remove it or pass --skip-invalid")
    return Conversation(id=str(item.get("id", where)), messages=system + turns)


def load_conversations(path: str | Path, skip_invalid: bool = False) -> tuple[list[Conversation], int]:
    """All conversations of a file, and how many invalid ones were skipped (only with ``skip_invalid``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} not found: pass --data-path to a ShareGPT .json or .jsonl file")
    text = path.read_text(encoding="utf-8")
    items: list[tuple[object, str]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}): fix or re-export the file") from None
        items = [(item, f"{path.name} item {i}") for i, item in enumerate(data)]
    else:
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON strings may hold U+2028
            if not line.strip():
                continue
            try:
                items.append((json.loads(line), f"{path.name} line {number}"))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path} line {number} is not valid JSON ({err.msg}): fix or remove that line") from None
    conversations, skipped = [], 0
    for item, where in items:
        try:
            conversations.append(_parse_item(item, where))
        except ConfigError:
            if not skip_invalid:
                raise
            skipped += 1
    if not conversations:
        raise ConfigError(f"{path} holds no usable conversation")
    return conversations, skipped
