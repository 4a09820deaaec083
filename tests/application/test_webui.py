"""The web UI command refuses a port it cannot listen on and bad options in one line, before loading a model."""

from __future__ import annotations

import socket

import pytest

from jakiro.application import webui
from jakiro.application.server import check_port, free_port
from jakiro.errors import ConfigError


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(args, seed=0):
        raise AssertionError("the model was loaded before the port and options were checked")

    monkeypatch.setattr(webui, "load_model", refuse)


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "serving on" not in out
    assert lines[0].startswith("jakiro webui: error: ")
    return lines[0]


def test_a_busy_port_is_refused_before_the_model_loads(tiny_chat_model_path, no_loading, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = webui.main(["--base-model-path", str(tiny_chat_model_path), "--random-head", "--port", str(port)])
    line = one_error_line(capsys)
    assert code == 1 and f"port {port} on 127.0.0.1 is already in use" in line and "pass another --port" in line
    assert "GRADIO_SERVER_PORT" not in line


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "--port 99999 is not a TCP port: pass a number from 1 to 65535"),
    (["--port", "0"], "--port 0 is not a TCP port"),
    (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' is not an address"),
    (["--temperature", "-1"], "--temperature must be a number >= 0 (0 = greedy), got -1.0"),
    (["--top-p", "2"], "--top-p must be between 0 and 1"),
    (["--max-new-token", "0"], "--max-new-token must be >= 1"),
])
def test_bad_server_and_sampling_options_are_one_line(tiny_chat_model_path, no_loading, capsys, argv, message):
    code = webui.main(["--base-model-path", str(tiny_chat_model_path), "--random-head", *argv])
    assert code == 1 and message in one_error_line(capsys)


def test_a_free_port_passes_the_check():
    check_port("127.0.0.1", free_port())
    with pytest.raises(ConfigError, match="not a TCP port"):
        check_port("127.0.0.1", -5)
