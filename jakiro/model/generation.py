"""The generation loops shared by every method: speculative (any `Drafter`) and plain decoding.

Both stop by the same rules, so their outputs and token counts are comparable: after the first
stop token (inclusive) or exactly ``max_new_tokens`` new tokens, never beyond.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError, ContextLengthError
from .drafter import Drafter
from .sampling import TokenSampler
from .target import TargetRunner
from .verify import verify


@dataclass
class GenerationStats:
    """What one generation did. ``accept_lengths[r]`` = tokens round r produced (accepted drafts + 1)."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    rounds: int = 0
    accept_lengths: list[int] = field(default_factory=list)
    prefill_time: float = 0.0
    draft_time: float = 0.0
    verify_time: float = 0.0
    bookkeeping_time: float = 0.0  # the part of verify_time spent after the walk: KV commit, drafter update
    wall_time: float = 0.0

    @property
    def mean_accept_length(self) -> float:
        """τ: mean tokens per verification round, bonus token included (the prefill is not a round)."""
        return sum(self.accept_lengths) / len(self.accept_lengths) if self.accept_lengths else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.wall_time if self.wall_time > 0 else 0.0


def vocab_size(model) -> int:
    """Rows of the model's input embedding: every prompt token id must be below this."""
    return int(model.get_input_embeddings().num_embeddings)


def check_prompt(input_ids: torch.Tensor, vocab: int | None = None) -> torch.Tensor:
    """A [1, T] LongTensor of ids, each in ``[0, vocab)`` when ``vocab`` is given (else a deep IndexError)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int):
        raise ConfigError("input_ids must be a LongTensor of token ids, shape [1, prompt_length]")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ConfigError(f"input_ids must have shape [1, prompt_length] (batch size 1), got {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ConfigError("the prompt is empty: pass at least one token")
    if vocab is not None:
        outside = ((input_ids < 0) | (input_ids >= vocab)).nonzero()
        if len(outside):
            position = int(outside[0, 1])
            raise ConfigError(f"token id {int(input_ids[0, position])} at prompt position {position} is outside the "
                              f"vocabulary (ids 0..{vocab - 1}): encode the prompt with this model's own tokenizer")
    return input_ids.long()


def check_tree_options(**options) -> None:
    """Tree sizes must be integers: a string such as "60" would otherwise fail deep inside with a TypeError."""
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__}): "
                              f"pass a Python int such as {name}={_as_int_hint(value)}")


def _as_int_hint(value) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 60


def plan_capacity(prompt_tokens: int, max_new_tokens: int, tree_tokens: int, context_length: int) -> int:
    """KV positions needed (prompt + new tokens + one tree in flight); raise before any work if they don't fit."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    needed = prompt_tokens + max_new_tokens + tree_tokens
    if needed > context_length:
        raise ContextLengthError(
            f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) + tree ({tree_tokens}) = {needed} "
            f"exceeds the context length {context_length}: shorten the prompt or lower max_new_tokens")
    return needed


class _Output:
    """Collects new tokens and applies the shared stopping rules."""

    def __init__(self, stop_ids: set[int], max_new_tokens: int):
        self.tokens: list[int] = []
        self.stop_ids, self.max_new_tokens = stop_ids, max_new_tokens
        self.done = False

    def emit(self, new: list[int]) -> list[int]:
        taken = []
        for token in new:
            taken.append(token)
            if token in self.stop_ids or len(self.tokens) + len(taken) >= self.max_new_tokens:
                self.done = True
                break
        self.tokens.extend(taken)
        return taken


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def speculative_stream(target: TargetRunner, drafter: Drafter, input_ids: torch.Tensor, sampler: TokenSampler,
                       max_new_tokens: int, capacity: int, stop_ids: set[int],
                       stats: GenerationStats) -> Iterator[list[int]]:
    """Draft, verify, accept; yields the new tokens of every step (the prefill's token first)."""
    device = target.device
    input_ids = input_ids.to(device)
    stats.prompt_tokens = input_ids.shape[1]
    output = _Output(stop_ids, max_new_tokens)
    begin = _now(device)
    target.reset(capacity)
    logits, features = drafter.prefill(target, input_ids)
    drafter.start(input_ids, features, capacity)
    root = sampler.sample(logits)
    stats.prefill_time = _now(device) - begin
    yield output.emit([root])
    stats.new_tokens, stats.wall_time = len(output.tokens), _now(device) - begin
    while not output.done:
        t0 = _now(device)
        tree = drafter.propose(root)
        t1 = _now(device)
        prefix = target.length
        logits, hidden = drafter.verify_forward(target, tree)
        verdict = verify(tree, logits, sampler)
        walked = _now(device)
        target.commit(prefix, verdict.path)
        path = torch.tensor(verdict.path, device=device)
        accepted = tree.tokens.to(device)[path]
        drafter.accept(accepted[None], hidden[path][None])
        t2 = _now(device)
        stats.draft_time += t1 - t0
        stats.verify_time += t2 - t1
        stats.bookkeeping_time += t2 - walked
        stats.rounds += 1
        new = accepted[1:].tolist() + [verdict.bonus_token]
        stats.accept_lengths.append(len(new))
        root = verdict.bonus_token
        emitted = output.emit(new)
        stats.new_tokens, stats.wall_time = len(output.tokens), _now(device) - begin
        yield emitted


@torch.no_grad()
def autoregressive_stream(target: TargetRunner, input_ids: torch.Tensor, sampler: TokenSampler,
                          max_new_tokens: int, capacity: int, stop_ids: set[int],
                          stats: GenerationStats) -> Iterator[list[int]]:
    """Plain decoding on the same cache and forward: the baseline speculative decoding is measured against."""
    device = target.device
    input_ids = input_ids.to(device)
    stats.prompt_tokens = input_ids.shape[1]
    output = _Output(stop_ids, max_new_tokens)
    begin = _now(device)
    target.reset(capacity)
    logits, _ = target.extend(input_ids)
    stats.prefill_time = _now(device) - begin
    while True:
        token = sampler.sample(logits)
        emitted = output.emit([token])
        stats.new_tokens, stats.wall_time = len(output.tokens), _now(device) - begin
        yield emitted
        if output.done:
            return
        stats.rounds += 1
        stats.accept_lengths.append(1)
        logits, _ = target.extend(torch.tensor([[token]], device=device))


class PlainDecoder:
    """Plain decoding of a base model with the library's cache, stop rule and checks (no draft head needed)."""

    def __init__(self, base_model, stop_ids: set[int] | None = None, target: TargetRunner | None = None):
        from .ea_model import stop_token_ids

        self.base_model = base_model
        self.stop_ids = stop_token_ids(base_model) if stop_ids is None else stop_ids
        self._target = TargetRunner(base_model) if target is None else target  # share one KV cache when given

    @property
    def context_length(self) -> int:
        return int(getattr(self.base_model.config, "max_position_embeddings", 2048))

    def stream(self, input_ids: torch.Tensor, sampler: TokenSampler, max_new_tokens: int,
               max_length: int | None, stats: GenerationStats) -> Iterator[list[int]]:
        """Yield each new token (as a one-element list) after the same up-front checks as speculation."""
        input_ids = check_prompt(input_ids, vocab_size(self.base_model))
        capacity = plan_capacity(input_ids.shape[1], max_new_tokens, 1,
                                 self.context_length if max_length is None else int(max_length))
        return autoregressive_stream(self._target, input_ids, sampler, max_new_tokens, capacity, self.stop_ids, stats)
