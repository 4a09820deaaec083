"""Run the web UI as a child process on a free loopback port (for screenshots and end-to-end tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import JakiroError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def webui_process(webui_args: list[str], timeout: float = 300.0, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``python -m jakiro.application.webui`` with ``webui_args`` and yield its URL once it answers.

    ``env`` adds environment variables for the child (e.g. ``OMP_NUM_THREADS``)."""
    port = free_port()
    command = [sys.executable, "-m", "jakiro.application.webui", *webui_args, "--host", "127.0.0.1",
               "--port", str(port)]
    child_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **(env or {})}
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    reason = "exited" if process.poll() is not None else f"did not answer within {timeout:.0f} s"
                    raise JakiroError(f"the web UI {reason}; its output:\n{log.read()[-4000:]}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
