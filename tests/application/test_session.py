"""Conversation state and how answers render (escaping, highlighting)."""

from __future__ import annotations

from jakiro.application.session import DRAFT_CLASS, FAILED, STOPPED, ChatSession, render_pieces
from jakiro.application.streaming import Piece


def test_highlight_wraps_only_drafted_text_and_escapes_markup():
    pieces = [Piece("<b>bold</b>", False), Piece(" *star*\nnext", True)]
    assert render_pieces(pieces, highlight=False) == "<b>bold</b> *star*\nnext"
    shown = render_pieces(pieces, highlight=True)
    assert "<b>" not in shown and "&lt;b&gt;" in shown
    assert "*" not in shown.replace("&#42;", "")
    assert shown.count(f'class="{DRAFT_CLASS}"') == 2  # one span per line, the newline stays outside
    assert "\n" in shown and "</span>\n<span" in shown


def test_prompt_history_skips_failed_turns_and_chatbot_shows_states():
    session = ChatSession()
    first = session.add("hi")
    first.pieces, first.state = [Piece("hello", False)], "done"
    failed = session.add("x" * 10)
    failed.state, failed.error = FAILED, "too long"
    stopped = session.add("go on")
    stopped.pieces, stopped.state = [Piece("partial", True)], STOPPED
    current = session.add("again")
    assert session.messages_for(current) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "go on"}, {"role": "assistant", "content": "partial"},
        {"role": "user", "content": "again"}]
    shown = [m["content"] for m in session.chatbot(highlight=False)]
    assert shown == ["hi", "hello", "x" * 10, "**Error:** too long", "go on", "partial *(stopped)*", "again", "…"]
