"""Streaming answers: text pieces, which tokens were drafted, and incremental decoding."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from jakiro.application.streaming import Detokenizer, Sampling, stream_answer
from jakiro.errors import ContextLengthError

STORY = [{"role": "user", "content": "tell me a story about a fox"}]


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE, so multi-byte characters are split over several tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"])
    tokenizer.train_from_iterator(["hello world", "speculative decoding"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


def test_detokenizer_rebuilds_text_with_split_characters():
    tokenizer = byte_level_tokenizer()
    text = "héllo wörld 日本語 decoding 🚀!"
    ids = tokenizer.encode(text) + [tokenizer.eos_token_id]
    assert len(ids) > len(text.split()) + 10  # the characters really are split over several tokens
    detok = Detokenizer(tokenizer)
    pieces = [detok.push(token) for token in ids]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)


def test_drafted_flags_follow_accept_lengths(tiny_ea_model):
    updates = list(stream_answer(tiny_ea_model, STORY, Sampling(max_new_tokens=40)))
    stats = tiny_ea_model.last_stats
    lengths = [len(u.token_ids) for u in updates[1:]]
    assert len(lengths) == stats.rounds and sum(lengths) + 1 == stats.new_tokens == 40
    assert lengths[:-1] == stats.accept_lengths[:-1] and lengths[-1] <= stats.accept_lengths[-1]  # last may be cut
    assert updates[0].drafted == [False]  # the prefill's token is the base model's
    for update, length in zip(updates[1:], stats.accept_lengths):
        assert update.drafted == ([True] * (length - 1) + [False])[:len(update.token_ids)]
    tokenizer = tiny_ea_model.tokenizer
    for update in updates:  # word-level tokens: one piece per token that shows any text
        shown = [f for t, f in zip(update.token_ids, update.drafted) if tokenizer.decode([t], skip_special_tokens=True)]
        assert [p.drafted for p in update.pieces] == shown
    assert stats.mean_accept_length > 2  # this base model and random head do accept drafts
    assert updates[-1].stats.drafted_tokens == sum(sum(u.drafted) for u in updates) > 20


def test_speculative_and_plain_give_the_same_greedy_text(tiny_ea_model):
    tokenizer = tiny_ea_model.tokenizer
    spec = list(stream_answer(tiny_ea_model, STORY, Sampling(max_new_tokens=25)))
    plain = list(stream_answer(tiny_ea_model, STORY, Sampling(max_new_tokens=25), speculative=False))
    spec_ids = [t for u in spec for t in u.token_ids]
    plain_ids = [t for u in plain for t in u.token_ids]
    assert spec_ids == plain_ids
    text = "".join(p.text for u in spec for p in u.pieces)
    assert text == "".join(p.text for u in plain for p in u.pieces)
    assert text == tokenizer.decode(spec_ids, skip_special_tokens=True)
    assert all(len(u.token_ids) == 1 and not any(p.drafted for p in u.pieces) for u in plain)
    assert plain[-1].stats.mean_accept_length == 1.0
    assert plain[-1].stats.new_tokens == len(plain_ids)


def test_prompt_past_the_context_raises_a_readable_error(tiny_ea_model):
    long_prompt = [{"role": "user", "content": "fox " * 600}]
    with pytest.raises(ContextLengthError, match="context length"):
        next(stream_answer(tiny_ea_model, long_prompt, Sampling(max_new_tokens=8)))
