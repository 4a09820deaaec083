"""The terminal chat: one-shot, compare and interactive modes, errors and --help."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from jakiro.application import cli, screenshot, webui
from jakiro.application.streaming import Sampling, stream_answer

JAKIRO_LINE = re.compile(r"^jakiro: (\d+) tokens in [\d.]+ s, [\d.]+ tokens/s, mean accepted length ([\d.]+)$")
PLAIN_LINE = re.compile(r"^plain: (\d+) tokens in [\d.]+ s, [\d.]+ tokens/s$")
PROMPT = "tell me a story about a fox"


def run_cli(argv: list[str], stdin: str = "") -> tuple[int, list[str]]:
    out = io.StringIO()
    code = cli.main(argv, stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue().splitlines()


def greedy_answer(model, n: int) -> str:
    updates = stream_answer(model, [{"role": "user", "content": PROMPT}], Sampling(max_new_tokens=n))
    return "".join(p.text for u in updates for p in u.pieces)


def test_one_shot_streams_the_answer_then_the_stats_line(tiny_model_args, tiny_ea_model):
    code, lines = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "12", "--temperature", "0"])
    assert code == 0 and len(lines) == 2
    assert lines[0] == greedy_answer(tiny_ea_model, 12)  # same weights (seed 0): the same greedy answer
    match = JAKIRO_LINE.match(lines[1])
    assert match and match.group(1) == "12" and float(match.group(2)) >= 1.0


def test_compare_adds_plain_decoding_and_the_speedup(tiny_model_args):
    code, lines = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "16", "--compare",
                           "--no-warmup"])
    assert code == 0
    assert JAKIRO_LINE.match(lines[1]).group(1) == "16"
    assert PLAIN_LINE.match(lines[2]).group(1) == "16"
    assert re.fullmatch(r"speedup: \d+\.\d\d x", lines[3])
    assert lines[4] == "same output as plain decoding: yes"


def test_highlight_colours_only_drafted_tokens(tiny_model_args):
    _, plain = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "30", "--no-warmup"])
    _, coloured = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "30", "--no-warmup",
                           "--highlight"])
    assert cli.DRAFT_ANSI in coloured[0] and cli.DRAFT_ANSI not in plain[0]
    assert coloured[0].replace(cli.DRAFT_ANSI, "").replace(cli.RESET_ANSI, "") == plain[0]


def test_interactive_chat_keeps_history_until_clear(tiny_model_args):
    code, lines = run_cli([*tiny_model_args, "--max-new-token", "8", "--no-warmup"],
                          stdin="hello\nthe fox\n/clear\nhello\n/exit\n")
    assert code == 0
    stats = [line for line in lines if line.startswith("[jakiro: 8 tokens")]
    answers = [line for line in lines if line.startswith(">>> ") and line not in (">>> ", ">>> (conversation cleared)")]
    assert len(stats) == 3 and "(conversation cleared)" in "\n".join(lines)
    assert answers[0] == answers[2]  # after /clear the same first question gets the same greedy answer


@pytest.fixture
def no_shipped_heads(tmp_path, monkeypatch):
    """As if the package had been installed without its shipped heads."""
    import jakiro.heads

    monkeypatch.setattr(jakiro.heads, "HEADS_DIR", tmp_path / "no-heads")


def test_plain_mode_and_missing_head_message(tiny_chat_model_path, capsys, no_shipped_heads):
    code, lines = run_cli(["--base-model-path", str(tiny_chat_model_path), "--random-head", "--plain",
                           "--prompt", "hi", "--max-new-token", "5", "--no-warmup"])
    assert code == 0 and PLAIN_LINE.match(lines[1]).group(1) == "5"
    code, _ = run_cli(["--base-model-path", str(tiny_chat_model_path), "--prompt", "hi"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and error.startswith("jakiro: error: shipped head")
    assert "jakiro-smollm2-135m-instruct" in error and "--random-head" in error


def test_context_overflow_is_reported_in_one_line(tiny_model_args, capsys):
    code, _ = run_cli([*tiny_model_args, "--prompt", "fox " * 600, "--no-warmup"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and error.startswith("jakiro: error: prompt (") and "context length" in error


@pytest.mark.parametrize("module, options", [
    (cli, ["--prompt", "--compare", "--random-head", "--top-k-tree", "--dtype", "--max-new-token"]),
    (webui, ["--host", "--port", "--total-token", "--ea-model-path", "--base-model-path", "--top-p", "--top-k"]),
    (screenshot, ["--out", "--prompt"]),
])
def test_help(module, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and all(option in text for option in options)


def test_module_entry_point(tiny_model_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "jakiro.application.cli", *tiny_model_args, "--prompt", PROMPT,
                             "--max-new-token", "10", "--compare"], capture_output=True, text=True, env=env,
                            timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert JAKIRO_LINE.match(lines[-4]) and PLAIN_LINE.match(lines[-3]) and lines[-2].startswith("speedup: ")


def test_webui_without_an_installed_head_says_what_to_do(tiny_chat_model_path, capsys, no_shipped_heads):
    assert webui.main(["--base-model-path", str(tiny_chat_model_path)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("jakiro webui: error: shipped head")
    assert "--random-head" in error[0]


def test_a_saved_head_folder_loads_through_ea_model_path(tiny_chat_model_path, tiny_head_path):
    code, lines = run_cli(["--base-model-path", str(tiny_chat_model_path), "--ea-model-path", str(tiny_head_path),
                           "--prompt", PROMPT, "--max-new-token", "10", "--compare", "--no-warmup"])
    assert code == 0 and JAKIRO_LINE.match(lines[1]).group(1) == "10"
    assert lines[-1] == "same output as plain decoding: yes"
