"""The second early exit on hand-made confidences: the rule itself, and the drafter obeying it."""

from __future__ import annotations

import math

import pytest
import torch

from kangaroo.model.early_exit import chain_length, draft_more
from tests.kangaroo.helpers import make_kangaroo
from tests.utils import hf_greedy, random_prompt


@pytest.mark.parametrize("confidences,threshold,steps,expected", [
    ([0.9, 0.9, 0.9, 0.9], 0.6, 6, 4),   # runs out of confidences (the caller's horizon)
    ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], 0.6, 6, 6),  # capped by steps
    ([0.5, 0.9, 0.9], 0.6, 6, 1),        # the first token is always drafted, then it was not confident
    ([0.9, 0.59, 0.99], 0.6, 6, 2),      # the low-confidence token itself stays in the draft
    ([0.9, 0.6, 0.1], 0.6, 6, 3),        # at the threshold counts as confident
    ([0.1, 0.1], 0.0, 6, 2),             # threshold 0: never stop early
    ([1.0, 1.0], 1.0, 1, 1),             # steps 1: one token per round
    ([], 0.6, 6, 0),
])
def test_chain_length(confidences, threshold, steps, expected):
    assert chain_length(confidences, threshold, steps) == expected


def test_draft_more():
    assert draft_more(0, None, 0.99, 1)          # the first token of a round is always drafted
    assert not draft_more(1, 0.99, 0.5, 1)       # steps reached
    assert draft_more(2, 0.5, 0.5, 6) and not draft_more(2, 0.49, 0.5, 6)


class ScriptedConfidence:
    """Replaces the adapter's output head: each call returns logits whose top probability is the next scripted
    confidence (on the token the base model would pick next, so drafts are accepted until the script says stop)."""

    def __init__(self, script: list[float], vocab: int):
        self.script, self.vocab, self.calls = list(script), vocab, 0
        self.next_token = None

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        confidence = self.script[self.calls % len(self.script)]
        self.calls += 1
        rest = math.log((1 - confidence) / (self.vocab - 1))
        logits = torch.full((self.vocab,), rest)
        logits[self.next_token()] = math.log(confidence)
        return logits


def test_drafter_stops_where_the_rule_says(tiny_base):
    base = tiny_base("llama", layers=3)
    threshold, steps = 0.6, 5
    ea = make_kangaroo(base, exit_layer=1, threshold=threshold, steps=steps)
    drafter, adapter = ea.drafter, ea.ea_layer
    prompt = random_prompt(1, base.config.vocab_size)
    continuation = hf_greedy(base, prompt, 60)[0].tolist()
    script = [0.9, 0.7, 0.3, 0.95, 0.2, 0.61, 0.99, 0.99, 0.99, 0.99, 0.99, 0.1, 0.5]
    head = ScriptedConfidence(script, base.config.vocab_size)
    position = {"at": prompt.shape[1]}  # index in `continuation` of the token the next draft should equal
    head.next_token = lambda: continuation[position["at"]]
    adapter.logits = head
    drafted = []
    propose = drafter.propose

    def recording_propose(root):
        position["at"] = len(continuation_so_far)  # the root is the last token so far; the first draft follows it
        calls = head.calls
        tree = propose(root)
        drafted.append((calls, len(tree) - 1))
        return tree

    continuation_so_far: list[int] = []
    drafter.propose = recording_propose
    real_next = drafter._next

    def next_advancing(shallow, width):
        out = real_next(shallow, width)
        position["at"] += 1
        return out

    drafter._next = next_advancing
    for ids in ea.ea_generate(prompt, max_new_tokens=40):
        continuation_so_far[:] = ids[0].tolist()
    assert ids.tolist() == [continuation[:ids.shape[1]]]
    assert len(drafted) >= 5
    for calls, length in drafted:
        upcoming = [script[(calls + i) % len(script)] for i in range(steps + 1)]
        assert length == chain_length(upcoming, threshold, steps)
    # every scripted draft was the base's next token, so every round accepted its whole chain
    assert ea.last_stats.accept_lengths[:-1] == [length + 1 for _, length in drafted][:-1]
