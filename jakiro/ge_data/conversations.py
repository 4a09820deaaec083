"""Read ShareGPT-style conversations (a JSON list or JSONL) into role/content messages.

With ``skip_invalid`` an item that cannot be used (a JSONL line that is not JSON or not UTF-8, an
item that is not a ShareGPT conversation, a conversation with no user turn) is skipped and
recorded with its place and reason, so the data-generation command can say what it left out.
A ``.json`` list must still parse as a whole: one broken character there breaks every item.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
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


class InvalidItem(ConfigError):
    """One item of the data file cannot be used; ``reason`` is the short name it is counted under."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SkippedItem:
    where: str  # e.g. "data.jsonl line 7"
    reason: str  # e.g. "not valid JSON": what skipped items are counted under
    message: str = field(default="", compare=False)  # the one-line error when not skipping


@dataclass
class LoadedConversations:
    conversations: list[Conversation]
    skipped: list[SkippedItem] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(item.reason for item in self.skipped))


SKIP_HINT = "fix or remove it, or pass --skip-invalid to skip such items"


def _parse_item(item, where: str) -> Conversation:
    if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
        raise InvalidItem(f"{where}: expected an object with a 'conversations' list (ShareGPT format); {SKIP_HINT}",
                          "not a ShareGPT conversation")
    messages = []
    for turn in item["conversations"]:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise InvalidItem(f"{where}: every turn needs 'from' and 'value'; {SKIP_HINT}", "a turn without from/value")
        role = ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise InvalidItem(f"{where}: unknown speaker {turn['from']!r} (expected human/gpt/system); {SKIP_HINT}",
                              "an unknown speaker")
        messages.append({"role": role, "content": str(turn["value"])})
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    while turns and turns[0]["role"] != "user":  # a reply with no question teaches nothing
        turns = turns[1:]
    if not turns:
        raise InvalidItem(f"{where}: the conversation is empty (no user turn); remove it or pass --skip-invalid",
                          "no user turn")
    return Conversation(id=str(item.get("id", where)), messages=system + turns)


def _jsonl_items(path: Path, data: bytes) -> list[tuple[object, str] | SkippedItem]:
    """Each non-blank line parsed, or the reason it cannot be."""
    items: list[tuple[object, str] | SkippedItem] = []
    for number, raw in enumerate(data.split(b"\n"), 1):  # not splitlines: JSON strings may hold U+2028
        if not raw.strip():
            continue
        where = f"{path.name} line {number}"
        fix = "fix or remove that line, or pass --skip-invalid to skip such lines"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            items.append(SkippedItem(where, "not UTF-8 text", f"{path} line {number} is not UTF-8 text: {fix}"))
            continue
        try:
            items.append((json.loads(line), where))
        except json.JSONDecodeError as err:
            items.append(SkippedItem(where, "not valid JSON",
                                     f"{path} line {number} is not valid JSON ({err.msg}): {fix}"))
    return items


def read_conversations(path: str | Path, skip_invalid: bool = False) -> LoadedConversations:
    """All usable conversations of a file, and (with ``skip_invalid``) every skipped item with its reason."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} not found: pass --data-path to a ShareGPT .json or .jsonl file")
    data = path.read_bytes()
    if data.lstrip().startswith(b"["):
        try:
            document = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): re-export it as UTF-8 (a JSON list "
                              "must be whole; --skip-invalid skips bad items, not a broken file)") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}): fix or re-export the "
                              "file (a JSON list must be whole; --skip-invalid skips bad items, not a broken file)"
                              ) from None
        items: list = [(item, f"{path.name} item {i}") for i, item in enumerate(document)]
    else:
        items = _jsonl_items(path, data)
    loaded = LoadedConversations([])
    for entry in items:
        if isinstance(entry, SkippedItem):
            if not skip_invalid:
                raise ConfigError(entry.message)
            loaded.skipped.append(entry)
            continue
        item, where = entry
        try:
            loaded.conversations.append(_parse_item(item, where))
        except InvalidItem as err:
            if not skip_invalid:
                raise
            loaded.skipped.append(SkippedItem(where, err.reason, str(err)))
    if not loaded.conversations:
        raise ConfigError(f"{path} holds no usable conversation")
    return loaded


def load_conversations(path: str | Path, skip_invalid: bool = False) -> tuple[list[Conversation], int]:
    """All conversations of a file, and how many invalid ones were skipped (only with ``skip_invalid``)."""
    loaded = read_conversations(path, skip_invalid)
    return loaded.conversations, len(loaded.skipped)


def describe_skipped(skipped: list[SkippedItem], examples: int = 3) -> str:
    """``2 not valid JSON (data.jsonl line 3, line 9), 1 no user turn (data.jsonl line 4)``."""
    by_reason: dict[str, list[str]] = {}
    for item in skipped:
        by_reason.setdefault(item.reason, []).append(item.where)
    parts = []
    for reason, places in by_reason.items():
        more = len(places) - examples
        shown = ", ".join(places[:examples]) + (f", ... ({more} more)" if more > 0 else "")
        parts.append(f"{len(places)} {reason} ({shown})")
    return "; ".join(parts)
