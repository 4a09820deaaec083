"""Headless Chromium (the system's, driven by Playwright) for screenshots and end-to-end tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # Several pages (sessions) stay live at once: no throttling of pages in the background.
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
INSTALL_HINT = "run `bash scripts/install_browser.sh` (installs Debian chromium and the playwright package)"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    """``$JAKIRO_CHROMIUM``, else a Chromium found on PATH or at /usr/bin/chromium."""
    explicit = os.environ.get("JAKIRO_CHROMIUM")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"JAKIRO_CHROMIUM={explicit!r} does not exist: {INSTALL_HINT}")
        return explicit
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    raise ConfigError(f"no Chromium found: {INSTALL_HINT}")


@contextmanager
def open_browser(width: int = 1280, height: int = 900, device_scale_factor: float = 1.0) -> Iterator[object]:
    """A Playwright browser context on the system Chromium with a fresh profile (removed afterwards)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ConfigError(f"the `playwright` package is missing: {INSTALL_HINT}") from None
    executable = chromium_path()
    profile = tempfile.mkdtemp(prefix="jakiro-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height}, device_scale_factor=device_scale_factor)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
