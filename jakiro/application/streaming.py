"""Turn a generation stream into text pieces that know whether the draft head guessed them.

Each speculative round yields ``accept_lengths[r]`` new tokens: the first ``accept_lengths[r] - 1`` are
draft tokens the base model accepted, the last one the base model produced itself. The prefill's
token (the first new token) and every token of plain decoding are the base model's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..chat import Message, prompt_ids
from .text_input import valid_text


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one answer (``temperature == 0`` is greedy; 0 disables top-p / top-k)."""

    temperature: float = 0.0
    top_p: float = 0.0
    top_k: int = 0
    max_new_tokens: int = 512


@dataclass(frozen=True)
class Piece:
    """Decoded text of one or more tokens; ``drafted`` when they were accepted draft tokens."""

    text: str
    drafted: bool


@dataclass(frozen=True)
class AnswerStats:
    """Live numbers of the answer being generated."""

    new_tokens: int = 0
    rounds: int = 0
    wall_time: float = 0.0
    tokens_per_second: float = 0.0
    mean_accept_length: float = 0.0
    drafted_tokens: int = 0

    def summary(self, label: str = "jakiro", with_tau: bool = True) -> str:
        """One line such as ``jakiro: 80 tokens in 1.20 s, 66.7 tokens/s, mean accepted length 2.31``."""
        line = f"{label}: {self.new_tokens} tokens in {self.wall_time:.2f} s, {self.tokens_per_second:.1f} tokens/s"
        if not with_tau:
            return line
        tau = f"{self.mean_accept_length:.2f}" if self.rounds else "n/a (no verification round finished)"
        return line + f", mean accepted length {tau}"


@dataclass
class StreamUpdate:
    """What one step of generation added: new pieces (possibly empty), its tokens, and the stats so far.

    ``drafted[i]`` tells whether ``token_ids[i]`` was an accepted draft token."""

    pieces: list[Piece]
    stats: AnswerStats
    token_ids: list[int] = field(default_factory=list)
    drafted: list[bool] = field(default_factory=list)


class Detokenizer:
    """Incremental decoding over a short window (as serving stacks do), correct for split characters."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.prefix = self.read = 0

    def push(self, token: int) -> str:
        """Add one token and return the text it completes (empty while a character is still split)."""
        self.tokens.append(int(token))
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        before = decode(self.tokens[self.prefix:self.read])
        after = decode(self.tokens[self.prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.tokens)
        return after[len(before):]


def _snapshot(model, drafted: int, produced: int, begin: float) -> AnswerStats:
    """The model's stats, or, while they lag behind what was streamed (the prefill's token is yielded before
    the model counts it), the streamed count over this answer's own clock: never "0 tokens" after text."""
    stats = model.last_stats
    if stats.new_tokens == produced:
        return AnswerStats(stats.new_tokens, stats.rounds, stats.wall_time, stats.tokens_per_second,
                           stats.mean_accept_length, drafted)
    wall = time.perf_counter() - begin
    return AnswerStats(produced, stats.rounds, wall, produced / wall if wall > 0 else 0.0,
                       stats.mean_accept_length, drafted)


def valid_messages(messages: list[Message]) -> list[Message]:
    """The messages with any undecodable bytes replaced (see `text_input.valid_text`), ready to tokenize."""
    return [{**m, "content": valid_text(m["content"])[0]} for m in messages]


def stream_answer(model, messages: list[Message], sampling: Sampling, speculative: bool = True,
                  max_length: int | None = None) -> Iterator[StreamUpdate]:
    """Generate the assistant's answer to ``messages``, yielding after every round (or token when plain).

    Raises `jakiro.errors.JakiroError` subclasses (e.g. `ContextLengthError`) on the first step."""
    begin = time.perf_counter()
    ids = torch.tensor([prompt_ids(model.tokenizer, valid_messages(messages))], dtype=torch.long)
    generate = model.ea_generate if speculative else model.naive_generate
    detok = Detokenizer(model.tokenizer)
    seen, rounds, drafted = ids.shape[1], 0, 0
    for output in generate(ids, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                           max_new_tokens=sampling.max_new_tokens, max_length=max_length):
        new = output[0, seen:].tolist()
        seen = output.shape[1]
        stats = model.last_stats
        accepted_drafts = 0
        if speculative and stats.rounds > rounds:
            accepted_drafts = stats.accept_lengths[-1] - 1
        rounds = stats.rounds
        flags = [i < accepted_drafts for i in range(len(new))]
        drafted += sum(flags)
        pieces = [Piece(text, flag) for token, flag in zip(new, flags) if (text := detok.push(token))]
        yield StreamUpdate(pieces, _snapshot(model, drafted, seen - ids.shape[1], begin), new, flags)
