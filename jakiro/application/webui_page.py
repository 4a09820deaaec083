"""Drive the web UI in a browser page by its element ids (used by the screenshot script and the tests)."""

from __future__ import annotations

import time


class ChatPage:
    """Page object over a Playwright ``Page`` showing the Jakiro web UI."""

    def __init__(self, page, url: str, timeout_s: float = 60.0):
        self.page = page
        self.timeout_ms = int(timeout_s * 1000)
        page.set_default_timeout(self.timeout_ms)
        page.goto(url)
        page.locator("#jk-prompt textarea").wait_for()

    def send(self, text: str) -> None:
        self.page.locator("#jk-prompt textarea").fill(text)
        self.page.locator("#jk-send").click()

    def click(self, name: str) -> None:
        """Click a button: ``send``, ``stop``, ``regenerate`` or ``clear``."""
        self.page.locator(f"#jk-{name}").click()

    def set_option(self, name: str, on: bool) -> None:
        """Tick or untick ``highlight`` or ``speculative``."""
        self.page.locator(f"#jk-{name} input").set_checked(on)

    def set_slider(self, label: str, value: float) -> None:
        """Type a value into the number box of the slider with this label."""
        box = self.page.get_by_label(label, exact=False).first
        box.fill(str(value))
        box.press("Enter")

    def status(self) -> str:
        """Our status line (the Markdown under the buttons, not Gradio's progress overlay)."""
        return self.page.locator('#jk-status [data-testid="markdown"]').inner_text().strip()

    def speed(self) -> str:
        return self.page.locator("#jk-speed textarea").input_value()

    def tau(self) -> str:
        return self.page.locator("#jk-tau textarea").input_value()

    def messages(self, role: str) -> list[str]:
        """Texts of the ``user`` or ``bot`` messages shown, oldest first."""
        return [text.strip() for text in self.page.locator(f'#jk-chat [data-testid="{role}"]').all_inner_texts()]

    def drafted_spans(self) -> int:
        return self.page.locator("#jk-chat .jk-draft").count()

    def wait_until(self, predicate, what: str, timeout_s: float | None = None, poll_s: float = 0.1) -> None:
        """Poll ``predicate()`` until true; raise ``TimeoutError`` naming ``what`` and the status otherwise."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_ms / 1000)
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; status: {self.status()!r}")
            time.sleep(poll_s)

    def wait_for_status(self, prefix: str, timeout_s: float | None = None) -> str:
        self.wait_until(lambda: self.status().startswith(prefix), f"status {prefix!r}", timeout_s)
        return self.status()

    def screenshot(self, path: str) -> None:
        self.page.screenshot(path=path, full_page=True)
