"""One model shared by many chat sessions: generation steps run one at a time, one answer at a time.

The web UI's queue already serialises answers; this guard also covers an answer that was cancelled
while a step was running: the next answer waits for that step, and the cancelled stream, should it
ever be resumed, ends instead of touching the cache the new answer owns.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from ..chat import Message
from .streaming import Sampling, StreamUpdate, stream_answer


class ModelRunner:
    """Serialises access to one `EaModel`; ``busy`` tells whether an answer is in progress."""

    def __init__(self, model, max_length: int | None = None):
        self.model = model
        self.max_length = max_length
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._latest = 0
        self._running = 0

    @property
    def busy(self) -> bool:
        return self._running > 0

    def stream(self, messages: list[Message], sampling: Sampling, speculative: bool = True) -> Iterator[StreamUpdate]:
        """Like `stream_answer`, but every step holds the model; a newer answer takes the model over."""
        with self._lock:
            ticket = next(self._tickets)
            self._running += 1
        inner = stream_answer(self.model, messages, sampling, speculative, self.max_length)
        try:
            while True:
                with self._lock:
                    if self._latest > ticket:
                        return
                    self._latest = ticket
                    try:
                        update = next(inner)
                    except StopIteration:
                        return
                yield update
        finally:
            inner.close()
            with self._lock:
                self._running -= 1
