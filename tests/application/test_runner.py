"""The shared-model guard: one step at a time, and a newer answer takes the model over."""

from __future__ import annotations

from jakiro.application.runner import ModelRunner
from jakiro.application.streaming import Sampling, stream_answer

FOX = [{"role": "user", "content": "tell me about the fox"}]
DOG = [{"role": "user", "content": "the lazy dog"}]


def token_ids(updates) -> list[int]:
    return [t for u in updates for t in u.token_ids]


def test_runner_streams_what_the_model_streams(tiny_ea_model):
    runner = ModelRunner(tiny_ea_model)
    direct = token_ids(stream_answer(tiny_ea_model, FOX, Sampling(max_new_tokens=20)))
    assert token_ids(runner.stream(FOX, Sampling(max_new_tokens=20))) == direct
    assert not runner.busy


def test_newer_answer_takes_over_and_the_older_one_ends(tiny_ea_model):
    runner = ModelRunner(tiny_ea_model)
    expected_dog = token_ids(stream_answer(tiny_ea_model, DOG, Sampling(max_new_tokens=20)))
    old = runner.stream(FOX, Sampling(max_new_tokens=50))
    first = next(old)
    assert runner.busy and first.token_ids
    new = runner.stream(DOG, Sampling(max_new_tokens=20))
    assert token_ids(new) == expected_dog  # not disturbed by the abandoned answer
    assert list(old) == []  # the old answer ends instead of using the cache the new one reset
    assert not runner.busy
