"""One browser session's conversation: turns with their answers, states and stats, and how they render."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..chat import Message
from .streaming import AnswerStats, Piece

PENDING, RUNNING, DONE, STOPPED, FAILED = "pending", "running", "done", "stopped", "failed"
DRAFT_CLASS = "jk-draft"
DRAFT_COLOR = "#e8710a"
# Characters Markdown would interpret, written as entities so generated text shows literally.
_MARKDOWN_ENTITIES = {c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~>$"}


@dataclass(eq=False)
class Turn:
    """A user message and the assistant's answer to it (``pieces``), with how the answer went."""

    user: str
    pieces: list[Piece] = field(default_factory=list)
    state: str = PENDING
    error: str = ""
    stats: AnswerStats = field(default_factory=AnswerStats)
    speculative: bool = True

    @property
    def answer(self) -> str:
        return "".join(piece.text for piece in self.pieces)

    def reset(self) -> None:
        self.pieces, self.state, self.error, self.stats = [], PENDING, "", AnswerStats()


@dataclass
class ChatSession:
    """The conversation of one browser session (kept in ``gr.State``, so never shared)."""

    turns: list[Turn] = field(default_factory=list)

    def add(self, user: str) -> Turn:
        turn = Turn(user)
        self.turns.append(turn)
        return turn

    def next_pending(self) -> Turn | None:
        return next((turn for turn in self.turns if turn.state == PENDING), None)

    def active(self) -> Turn | None:
        """The turn being answered or waiting for the model, if any."""
        return next((turn for turn in self.turns if turn.state in (PENDING, RUNNING)), None)

    def messages_for(self, turn: Turn) -> list[Message]:
        """The prompt conversation up to ``turn``: earlier answered turns (failed ones left out), then its message."""
        messages: list[Message] = []
        for earlier in self.turns:
            if earlier is turn:
                break
            if earlier.state != FAILED:
                messages += [{"role": "user", "content": earlier.user},
                             {"role": "assistant", "content": earlier.answer}]
        messages.append({"role": "user", "content": turn.user})
        return messages

    def chatbot(self, highlight: bool) -> list[dict[str, str]]:
        """Messages for ``gr.Chatbot``."""
        shown: list[dict[str, str]] = []
        for turn in self.turns:
            shown.append({"role": "user", "content": turn.user})
            content = render_turn(turn, highlight)
            if content:
                shown.append({"role": "assistant", "content": content})
        return shown


def _escape(text: str) -> str:
    return "".join(_MARKDOWN_ENTITIES.get(c, c) for c in html.escape(text, quote=False))


def render_pieces(pieces: list[Piece], highlight: bool) -> str:
    """Answer text; with ``highlight`` accepted draft tokens are wrapped in a coloured span."""
    if not highlight:
        return "".join(piece.text for piece in pieces)
    out: list[str] = []
    for piece in pieces:
        for i, line in enumerate(piece.text.split("\n")):
            if i:
                out.append("\n")
            if line and piece.drafted:
                out.append(f'<span class="{DRAFT_CLASS}" style="color:{DRAFT_COLOR}">{_escape(line)}</span>')
            else:
                out.append(_escape(line))
    return "".join(out)


def render_turn(turn: Turn, highlight: bool) -> str:
    body = render_pieces(turn.pieces, highlight)
    if turn.state == FAILED:
        return f"**Error:** {html.escape(turn.error, quote=False)}"
    if turn.state == STOPPED:
        return (body + " " if body else "") + "*(stopped)*"
    if turn.state == PENDING:
        return "…"
    return body


def stats_fields(stats: AnswerStats, speculative: bool) -> tuple[str, str]:
    """Texts for the speed box and the mean-accepted-length box."""
    if stats.new_tokens == 0:
        return "", ""
    tau = f"{stats.mean_accept_length:.2f}" if speculative else "1.00 (plain decoding)"
    return f"{stats.tokens_per_second:.1f}", tau
