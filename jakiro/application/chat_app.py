"""The web UI's event handlers, free of layout: they take and return plain values (testable without a browser).

Every handler returns ``(session, chatbot messages, status, speed, mean accepted length)``;
`ChatApp.submit` also returns the cleared input box first. Stopping and clearing only mark the
session; the answer's own stream then yields the final view, so a session's views arrive in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..errors import JakiroError
from .runner import ModelRunner
from .session import DONE, FAILED, PENDING, RUNNING, STOPPED, ChatSession, Turn, stats_fields
from .streaming import Sampling
from .text_input import valid_text

Outputs = tuple[ChatSession, list[dict[str, str]], str, str, str]

WAITING = "**Waiting:** the model is answering another request; yours starts when it finishes."
STARTING = "**Starting…**"
CLEARED = "Conversation cleared."
KEEP = object()  # an output to leave unchanged (the web UI turns it into ``gr.skip()``)


class ChatApp:
    """Handlers bound to one shared `ModelRunner`; per-session state lives in the `ChatSession` passed in."""

    def __init__(self, runner: ModelRunner, stream_delay: float = 0.0):
        self.runner = runner
        self.stream_delay = stream_delay

    def _outputs(self, session: ChatSession, highlight: bool, status: str, turn: Turn | None = None) -> Outputs:
        speed, tau = stats_fields(turn.stats, turn.speculative) if turn else ("", "")
        return session, session.chatbot(highlight), status, speed, tau

    def _queued_status(self) -> str:
        return WAITING if self.runner.busy else STARTING

    def submit(self, text: str, session: ChatSession, highlight: bool) -> tuple[str, ...]:
        """Add the user's message as a pending turn (instant; the answer follows in `generate`)."""
        text = valid_text(text or "")[0].strip()
        if not text:
            return ("", *self._outputs(session, highlight, "Type a message first."))
        turn = session.add(text)
        return ("", *self._outputs(session, highlight, self._queued_status(), turn))

    def regenerate(self, session: ChatSession, highlight: bool) -> Outputs:
        """Answer the last message again (its old answer is dropped)."""
        if not session.turns:
            return self._outputs(session, highlight, "Nothing to regenerate yet.")
        if session.active() is not None:
            return self._outputs(session, highlight, "An answer is still in progress: Stop it first.")
        turn = session.turns[-1]
        turn.reset()
        return self._outputs(session, highlight, self._queued_status(), turn)

    def stop(self, session: ChatSession, highlight: bool) -> Outputs:
        """Stop the running answer and drop waiting ones.

        A running answer's own stream shows the final "Stopped" view after its current round, so its
        outputs arrive in order; here the outputs are then all `KEEP` (leave the components as they are)."""
        turn = session.active()
        if turn is None:
            return self._outputs(session, highlight, "Nothing to stop.", session.turns[-1] if session.turns else None)
        running = any(t.state == RUNNING for t in session.turns)
        for waiting in session.turns:
            if waiting.state in (PENDING, RUNNING):
                waiting.state = STOPPED
        if running:
            return session, KEEP, KEEP, KEEP, KEEP
        return self._outputs(session, highlight, "**Stopped** before it started.", turn)

    def clear(self, session: ChatSession, highlight: bool) -> Outputs:
        """Forget the conversation (a running answer is stopped after its current round)."""
        for turn in session.turns:
            if turn.state in (PENDING, RUNNING):
                turn.state = STOPPED
        session.turns.clear()
        return self._outputs(session, highlight, CLEARED)

    def rerender(self, session: ChatSession, highlight: bool) -> list[dict[str, str]]:
        return session.chatbot(highlight)

    def generate(self, session: ChatSession, speculative: bool, highlight: bool, temperature: float, top_p: float,
                 top_k: float, max_new_tokens: float) -> Iterator[Outputs]:
        """Stream the answer of the next pending turn, yielding after every verification round.

        Always ends with one final view (done, stopped, cleared or error), after which it yields nothing."""
        turn = session.next_pending()
        if turn is None:
            return
        turn.state, turn.speculative = RUNNING, bool(speculative)
        label = "Jakiro" if speculative else "plain decoding"
        yield self._outputs(session, highlight, f"**Generating** with {label}…", turn)
        stream = None
        try:
            sampling = Sampling(float(temperature), float(top_p), int(top_k), int(max_new_tokens))
            stream = self.runner.stream(session.messages_for(turn), sampling, speculative=turn.speculative)
            for update in stream:
                if turn.state != RUNNING:
                    break
                turn.pieces.extend(update.pieces)
                turn.stats = update.stats
                progress = f"**Generating** with {label}… {update.stats.new_tokens} tokens"
                yield self._outputs(session, highlight, progress, turn)
                if self.stream_delay:
                    time.sleep(self.stream_delay)
                if turn.state != RUNNING:
                    break
        except JakiroError as error:
            turn.state, turn.error = FAILED, str(error)
        finally:
            if stream is not None:
                stream.close()
        if turn.state == RUNNING:
            turn.state = DONE
        yield self._outputs(session, highlight, self._final_status(session, turn, label), turn)

    @staticmethod
    def _final_status(session: ChatSession, turn: Turn, label: str) -> str:
        if not any(t is turn for t in session.turns):
            return CLEARED
        if turn.state == FAILED:
            return f"**Error:** {turn.error}"
        if turn.state == STOPPED:
            return f"**Stopped** after {turn.stats.new_tokens} tokens."
        return "**Done.** " + turn.stats.summary(label, with_tau=turn.speculative)
