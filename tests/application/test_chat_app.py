"""The web UI's handlers without a browser: streaming, stop, regenerate, clear, errors, sessions."""

from __future__ import annotations

import pytest

from jakiro.application.chat_app import CLEARED, KEEP, WAITING, ChatApp
from jakiro.application.runner import ModelRunner
from jakiro.application.session import DONE, FAILED, STOPPED, ChatSession

GREEDY = dict(speculative=True, highlight=False, temperature=0.0, top_p=0.0, top_k=0, max_new_tokens=30)


@pytest.fixture()
def app(tiny_ea_model) -> ChatApp:
    return ChatApp(ModelRunner(tiny_ea_model))


def ask(app: ChatApp, session: ChatSession, text: str, **settings) -> list[tuple]:
    app.submit(text, session, False)
    return list(app.generate(session, **{**GREEDY, **settings}))


def test_answer_streams_and_ends_with_stats(app):
    session = ChatSession()
    cleared, _, chat, status, _, _ = app.submit("tell me a story", session, False)
    assert cleared == "" and chat[-1] == {"role": "assistant", "content": "…"} and status
    outputs = list(app.generate(session, **GREEDY))
    answers = [out[1][-1]["content"] for out in outputs[1:-1]]
    assert len(answers) > 3 and all(len(a) <= len(b) for a, b in zip(answers, answers[1:]))  # grows as it streams
    _, chat, status, speed, tau = outputs[-1]
    assert session.turns[0].state == DONE and chat[-1]["content"] == session.turns[0].answer != ""
    assert status.startswith("**Done.** Jakiro: 30 tokens in") and "mean accepted length" in status
    assert float(speed) > 0 and float(tau) >= 1.0


def test_second_message_sees_the_first_answer(app, tiny_ea_model):
    session = ChatSession()
    ask(app, session, "hello")
    ask(app, session, "and the fox")
    first, second = session.turns
    assert second.state == DONE
    assert session.messages_for(second)[:2] == [{"role": "user", "content": "hello"},
                                                {"role": "assistant", "content": first.answer}]
    assert tiny_ea_model.last_stats.prompt_tokens > len(first.answer.split()) + 4


def test_stop_keeps_the_partial_answer_and_the_stream_shows_it_last(app):
    session = ChatSession()
    app.submit("tell me a story", session, False)
    stream = app.generate(session, **{**GREEDY, "max_new_tokens": 200})
    for _ in range(4):
        next(stream)
    assert app.stop(session, False)[1:] == (KEEP,) * 4  # the running stream draws the final view
    turn = session.turns[0]
    assert turn.state == STOPPED and 0 < turn.stats.new_tokens < 200
    _, chat, status, speed, _ = next(stream)
    assert status == f"**Stopped** after {turn.stats.new_tokens} tokens." and float(speed) > 0
    assert chat[-1]["content"] == turn.answer + " *(stopped)*"
    assert list(stream) == []


def test_stop_before_the_answer_starts(app):
    session = ChatSession()
    app.submit("hello", session, False)
    _, chat, status, _, _ = app.stop(session, False)
    assert status.startswith("**Stopped**") and chat[-1]["content"] == "*(stopped)*"
    assert list(app.generate(session, **GREEDY)) == []  # the queued event finds nothing left to answer


def test_clear_while_answering_ends_the_stream_with_an_empty_chat(app):
    session = ChatSession()
    app.submit("tell me a story", session, False)
    stream = app.generate(session, **{**GREEDY, "max_new_tokens": 200})
    next(stream), next(stream)
    _, chat, status, _, _ = app.clear(session, False)
    assert chat == [] and status == CLEARED
    assert [out[1:3] for out in stream] == [([], CLEARED)]


def test_regenerate_and_clear(app):
    session = ChatSession()
    ask(app, session, "the lazy dog")
    first_answer = session.turns[0].answer
    app.regenerate(session, False)
    assert session.turns[0].answer == "" and session.next_pending() is session.turns[0]
    list(app.generate(session, **GREEDY))
    assert session.turns[0].answer == first_answer  # greedy: the same answer again
    _, chat, status, speed, tau = app.clear(session, False)
    assert session.turns == [] and chat == [] and (speed, tau) == ("", "")


def test_context_overflow_is_a_message_in_the_chat(app):
    session = ChatSession()
    outputs = ask(app, session, "fox " * 600)
    _, chat, status, _, _ = outputs[-1]
    assert session.turns[0].state == FAILED
    assert chat[-1]["content"].startswith("**Error:**") and "context length" in chat[-1]["content"]
    assert status.startswith("**Error:**")
    ask(app, session, "hello")  # the conversation goes on without the failed turn
    assert session.turns[1].state == DONE
    assert session.messages_for(session.turns[1]) == [{"role": "user", "content": "hello"}]


def test_invalid_sampling_is_a_readable_error(app):
    session = ChatSession()
    _, chat, status, _, _ = ask(app, session, "hello", top_p=1.5)[-1]
    assert "top_p must be in [0, 1]" in chat[-1]["content"]


def test_sessions_are_independent_and_a_second_request_sees_it_must_wait(app):
    a, b = ChatSession(), ChatSession()
    app.submit("tell me a story", a, False)
    stream_a = app.generate(a, **GREEDY)
    next(stream_a), next(stream_a)
    _, _, chat_b, status_b, _, _ = app.submit("hello", b, False)
    assert status_b == WAITING and [m["content"] for m in chat_b] == ["hello", "…"]
    list(stream_a)
    list(app.generate(b, **GREEDY))
    assert [t.user for t in a.turns] == ["tell me a story"] and [t.user for t in b.turns] == ["hello"]
    assert a.turns[0].state == b.turns[0].state == DONE and a.turns[0].answer != b.turns[0].answer
