"""End to end: the web UI on a free loopback port, driven in headless Chromium by two sessions.

Needs Debian's chromium and the playwright package: `bash scripts/install_browser.sh` (the test set-up
runs it). Missing pieces make this test fail with that hint; it is never skipped.
"""

from __future__ import annotations

import time

import pytest

from jakiro.application.browser import open_browser
from jakiro.application.screenshot import capture
from jakiro.application.server import webui_process
from jakiro.application.webui_page import ChatPage

pytestmark = pytest.mark.browser


def answer_length(page: ChatPage) -> int:
    bots = page.messages("bot")
    return len(bots[-1]) if bots else 0


def test_two_sessions_stream_stop_clear_and_screenshot(tiny_model_args, tmp_path):
    args = [*tiny_model_args, "--temperature", "0", "--max-new-token", "250", "--stream-delay", "0.08"]
    with webui_process(args, env={"OMP_NUM_THREADS": "1"}) as url, open_browser() as browser:
        a, b = ChatPage(browser.new_page(), url), ChatPage(browser.new_page(), url)
        a.set_option("highlight", True)

        # Session A's first answer streams in: the text grows while the status says it is generating.
        a.send("tell me a story")
        a.wait_until(lambda: answer_length(a) > 5 and a.status().startswith("Generating"), "A's answer to start")
        before = answer_length(a)
        a.wait_until(lambda: answer_length(a) > before, "A's answer to grow")
        assert float(a.speed()) > 0 and float(a.tau()) >= 1.0

        # Session B asks meanwhile: it waits with a visible status, and sees only its own chat.
        b.send("hello")
        b.wait_for_status("Waiting", timeout_s=10)
        assert b.messages("user") == ["hello"]

        # Stop ends A's answer, keeps the partial text, and lets B's answer run.
        a.click("stop")
        a.wait_for_status("Stopped")
        stopped = a.messages("bot")[-1]
        assert stopped.endswith("(stopped)") and len(stopped) > len("(stopped)")
        b.wait_for_status("Generating")
        time.sleep(0.5)
        assert a.messages("bot")[-1] == stopped
        b.wait_for_status("Done", timeout_s=120)
        assert b.messages("user") == ["hello"] and len(b.messages("bot")) == 1

        # A's second message is answered in full with the conversation so far; accepted drafts are coloured.
        a.send("and the lazy dog")
        status = a.wait_for_status("Done", timeout_s=120)
        assert "Jakiro: 250 tokens" in status and "mean accepted length" in status
        assert a.messages("user") == ["tell me a story", "and the lazy dog"] and len(a.messages("bot")) == 2
        assert a.drafted_spans() > 0
        shot = tmp_path / "webui.png"
        a.screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # Clear empties A's chat only.
        a.click("clear")
        a.wait_for_status("Conversation cleared")
        a.wait_until(lambda: a.messages("user") == [] and a.messages("bot") == [], "A's chat to be empty")
        assert b.messages("user") == ["hello"]

        # A prompt past the context length is a readable message in the chat; then the UI still answers.
        b.send("fox " * 600)
        b.wait_for_status("Error")
        assert "exceeds the context length" in b.messages("bot")[-1]

        # The screenshot script's capture works against the same server.
        out = capture(url, tmp_path / "capture.png", prompt="one two three", context=browser, timeout_s=120)
        assert out.stat().st_size > 20_000


def test_a_missing_chromium_names_the_install_script(monkeypatch, tmp_path):
    from jakiro.application.browser import chromium_path
    from jakiro.errors import ConfigError

    monkeypatch.setenv("JAKIRO_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(ConfigError, match="scripts/install_browser.sh"):
        chromium_path()
