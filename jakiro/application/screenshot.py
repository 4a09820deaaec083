"""Screenshot of the web UI answering a prompt with highlighting on.

``python -m jakiro.application.screenshot --out figs/webui.png [-- webui arguments]``: starts the web
UI on a free loopback port with the given arguments, asks the prompt in headless Chromium, waits for
the answer and saves a PNG. Arguments it does not know are passed to the web UI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import JakiroError
from .browser import open_browser
from .server import webui_process
from .webui_page import ChatPage

DEFAULT_PROMPT = "Explain in three short paragraphs why the sky is blue."


def capture(url: str, out: str | Path, prompt: str = DEFAULT_PROMPT, highlight: bool = True,
            timeout_s: float = 600.0, context=None) -> Path:
    """Ask ``prompt`` on the UI at ``url`` and save a full-page screenshot once the answer is done."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def shoot(browser) -> None:
        page = ChatPage(browser.new_page(), url, timeout_s=timeout_s)
        page.set_option("highlight", highlight)
        page.send(prompt)
        page.wait_until(lambda: page.status().startswith(("Done", "Error", "Stopped")), "the answer", timeout_s)
        page.screenshot(str(out))
        page.page.close()

    if context is not None:
        shoot(context)
    else:
        with open_browser(device_scale_factor=1.5) as browser:
            shoot(browser)
    return out


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m jakiro.application.screenshot",
                                     description=__doc__.splitlines()[0],
                                     epilog="Other arguments (e.g. --base-model-path, --random-head, --temperature) "
                                            "go to the web UI; see python -m jakiro.application.webui --help.")
    parser.add_argument("--out", default="figs/webui.png", help="PNG to write (default: figs/webui.png)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="message to ask (default: a short explanation)")
    parser.add_argument("--no-highlight", action="store_true", help="leave draft-token highlighting off")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for start-up and the answer")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, webui_args = parse_args(argv)
    if webui_args and webui_args[0] == "--":
        webui_args = webui_args[1:]
    try:
        with webui_process(webui_args, timeout=args.timeout) as url:
            out = capture(url, args.out, args.prompt, not args.no_highlight, args.timeout)
    except (JakiroError, TimeoutError) as error:
        print(f"jakiro screenshot: error: {error}", file=sys.stderr)
        return 1
    print(f"jakiro screenshot: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
