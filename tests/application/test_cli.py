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
    match = re.fullmatch(r"speedup: (\d+\.\d\d) x \(median of 3 interleaved runs each; run by run "
                         r"(\d+\.\d\d)-(\d+\.\d\d) x\)", lines[3])
    assert match and float(match.group(2)) <= float(match.group(1)) <= float(match.group(3))
    assert lines[4] == "same output as plain decoding: yes"


def test_compare_runs_one_prints_the_single_runs_and_refuses_zero(tiny_model_args, capsys):
    code, lines = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "8", "--compare",
                           "--compare-runs", "1", "--no-warmup"])
    assert code == 0 and re.fullmatch(r"speedup: \d+\.\d\d x", lines[3])
    with pytest.raises(SystemExit):
        run_cli([*tiny_model_args, "--prompt", PROMPT, "--compare", "--compare-runs", "0"])
    assert "--compare-runs must be at least 1" in capsys.readouterr().err


def test_median_run_is_the_middle_speed():
    from jakiro.application.streaming import AnswerStats

    runs = [AnswerStats(10, 5, 1.0, speed, 2.0, 5) for speed in (30.0, 10.0, 20.0, 40.0)]
    assert cli.median_run(runs[:3]).tokens_per_second == 20.0
    assert cli.median_run(runs).tokens_per_second == 20.0  # the lower middle of an even count


def test_auto_tree_says_which_budget_and_depth_it_chose(tiny_model_args):
    code, lines = run_cli([*tiny_model_args, "--prompt", PROMPT, "--max-new-token", "8", "--no-warmup",
                           "--total-token", "-1", "--depth", "3"])
    assert code == 0 and JAKIRO_LINE.match(lines[1])
    match = re.fullmatch(r"tree: (\d+) nodes, depth (\d) \(chosen for this head on this device; .*\)", lines[2])
    assert match and int(match.group(2)) <= 3


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


# -- rough edges (issue 12): bytes that are not UTF-8, options refused before loading, Ctrl-C ----------------
NOT_UTF8_PROMPT = "caf\udce9 \udcff hello"  # what Python puts in sys.argv for the bytes b"caf\xe9 \xff hello"


def test_a_prompt_that_is_not_utf8_is_answered_with_a_note(tiny_model_args, capsys):
    code, lines = run_cli([*tiny_model_args, "--prompt", NOT_UTF8_PROMPT, "--max-new-token", "6", "--no-warmup"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and JAKIRO_LINE.match(lines[1]).group(1) == "6"
    assert err == ["note: the input was not valid UTF-8; the undecodable bytes were replaced by \ufffd (--prompt)"]


def test_interactive_chat_survives_a_line_that_is_not_utf8(tiny_model_args):
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9 \xff hello\nthe fox\n/exit\n"), encoding="utf-8")  # strict
    out = io.StringIO()
    code = cli.main([*tiny_model_args, "--max-new-token", "5", "--no-warmup"], stdin=stdin, stdout=out)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert sum(line.startswith("[jakiro: 5 tokens") for line in lines) == 2  # both lines answered, one session
    assert sum("not valid UTF-8" in line for line in lines) == 1


@pytest.mark.parametrize("option, message", [
    (["--temperature", "-1"], "--temperature must be a number >= 0 (0 = greedy), got -1.0"),
    (["--temperature", "nan"], "--temperature must be a number >= 0"),
    (["--top-p", "1.5"], "--top-p must be between 0 and 1"),
    (["--top-k", "-2"], "--top-k must be >= 0"),
    (["--max-new-token", "0"], "--max-new-token must be >= 1"),
    (["--total-token", "1"], "--total-token must be >= 2"),
    (["--depth", "0"], "--depth must be >= 1"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
])
def test_bad_options_are_refused_before_the_model_loads(tiny_model_args, monkeypatch, capsys, option, message):
    def no_loading(args):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(cli, "load_model", no_loading)
    code, lines = run_cli([*tiny_model_args, "--prompt", PROMPT, *option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines == [] and len(err) == 1
    assert err[0].startswith("jakiro: error: ") and message in err[0]


def test_ctrl_c_during_the_first_round_reports_the_tokens_shown(tiny_model_args, monkeypatch):
    """Ctrl-C after the prefill's token: the stats line counts that token and the time until the stop."""
    real_stream, calls = cli.stream_answer, []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        stream = real_stream(*args, **kwargs)
        if len(calls) == 1:
            yield next(stream)  # the prefill's token, then the user presses Ctrl-C during the first round
            stream.close()
            raise KeyboardInterrupt
        yield from stream

    monkeypatch.setattr(cli, "stream_answer", interrupted_once)
    code, lines = run_cli([*tiny_model_args, "--max-new-token", "6", "--no-warmup"], stdin="the fox\nthe fox\n/exit\n")
    assert code == 0
    stopped = next(i for i, line in enumerate(lines) if line.endswith(" (stopped)"))
    first = re.match(r"^\[jakiro: (\d+) tokens in [\d.]+ s, ([\d.]+) tokens/s, mean accepted length n/a",
                     lines[stopped + 1])
    assert first and first.group(1) == "1" and float(first.group(2)) > 0  # (the bug said "0 tokens in 0.00 s")
    assert lines[stopped][len(">>> "):-len(" (stopped)")]  # the token's text was shown
    assert lines[stopped + 3].startswith("[jakiro: 6 tokens")  # the chat goes on: the next answer, its stats
