"""Reading conversations: each unusable item fails in one line, or with --skip-invalid is skipped with its reason."""

from __future__ import annotations

import json

import pytest

from jakiro.errors import ConfigError
from jakiro.ge_data.conversations import SkippedItem, describe_skipped, read_conversations

GOOD = {"id": "ok", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
BAD_LINES = [
    (b'{"id": 1, "conversations": [', "not valid JSON", "line 2 is not valid JSON"),
    (b'{"id": "x", "conversations": [{"from": "human", "value": "caf\xe9"}]}', "not UTF-8 text",
     "line 2 is not UTF-8 text"),
    (b'{"id": 2, "conversations": []}', "no user turn", "the conversation is empty (no user turn)"),
    (b'{"id": 3, "turns": []}', "not a ShareGPT conversation", "expected an object with a 'conversations' list"),
    (b'{"id": 4, "conversations": [{"from": "alien", "value": "x"}]}', "an unknown speaker", "unknown speaker 'alien'"),
    (b'{"id": 5, "conversations": [{"speaker": "human"}]}', "a turn without from/value", "needs 'from' and 'value'"),
]


def write(tmp_path, *lines: bytes):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("line, reason, message", BAD_LINES, ids=[r for _, r, _ in BAD_LINES])
def test_each_unusable_item_is_one_line_or_skipped_with_its_reason(tmp_path, line, reason, message):
    path = write(tmp_path, json.dumps(GOOD).encode(), line)
    with pytest.raises(ConfigError) as error:
        read_conversations(path)
    assert message in str(error.value) and "--skip-invalid" in str(error.value) and "\n" not in str(error.value)
    loaded = read_conversations(path, skip_invalid=True)
    assert [c.id for c in loaded.conversations] == ["ok"]
    assert loaded.skipped == [SkippedItem("data.jsonl line 2", reason)]


def test_skipped_items_are_described_by_reason(tmp_path):
    lines = [json.dumps(GOOD).encode()] + [b"{broken"] * 5 + [b'{"id": 2, "conversations": []}']
    loaded = read_conversations(write(tmp_path, *lines), skip_invalid=True)
    assert loaded.skipped_by_reason() == {"not valid JSON": 5, "no user turn": 1}
    assert describe_skipped(loaded.skipped) == (
        "5 not valid JSON (data.jsonl line 2, data.jsonl line 3, data.jsonl line 4, ... (2 more)); "
        "1 no user turn (data.jsonl line 7)")


def test_a_broken_json_list_cannot_be_skipped_and_says_so(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[" + json.dumps(GOOD) + ", {broken]")
    with pytest.raises(ConfigError, match="a JSON list must be whole; --skip-invalid skips bad items"):
        read_conversations(path, skip_invalid=True)
