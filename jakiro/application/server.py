"""Where the web UI listens: check a port before loading the model, and run the UI as a child process on a
free loopback port (for screenshots and end-to-end tests)."""

from __future__ import annotations

import errno
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

from ..errors import ConfigError, JakiroError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Fail in one line, before any model is loaded, when the web UI could not listen on ``host:port``."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port: pass a number from 1 to 65535 (default 7860)")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"--host {host!r} is not an address this machine knows: pass 127.0.0.1 (this machine only) "
                          "or 0.0.0.0 (the network)") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use (another web UI?): pass another --port, "
                                  f"e.g. --port {_suggest_port(host, port)}") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror or err}): pass another --host or "
                              "--port") from None


def _suggest_port(host: str, busy: int) -> int:
    try:
        return free_port(host)
    except OSError:
        return busy + 1


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
