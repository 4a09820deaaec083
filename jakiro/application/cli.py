"""Terminal chat: ``python -m jakiro.application.cli [--prompt TEXT [--compare]]``.

Without ``--prompt`` it is an interactive chat (``/clear`` forgets the conversation, ``/exit`` or
Ctrl-D quits, Ctrl-C stops the answer being written). With ``--prompt`` it answers once, streaming,
then prints ``jakiro: N tokens in S s, X tokens/s, mean accepted length τ``; ``--compare`` also runs
plain decoding on the same prompt and prints the speedup (medians of ``--compare-runs`` interleaved runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import TextIO

from ..chat import Message
from ..errors import JakiroError
from .options import (add_model_arguments, add_sampling_arguments, check_options, head_label, load_model,
                      quiet_loading, sampling_from_args)
from .streaming import AnswerStats, Piece, Sampling, stream_answer
from .text_input import REPLACEMENT_NOTE, read_line, valid_text

DRAFT_ANSI, RESET_ANSI = "\033[38;5;208m", "\033[0m"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jakiro.application.cli", description=__doc__.splitlines()[0],
                                     epilog="Interactive commands: /clear, /exit.")
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    chat = parser.add_argument_group("chat")
    chat.add_argument("--prompt", help="answer this one message and exit (one-shot mode)")
    chat.add_argument("--system", help="system message put before the conversation")
    chat.add_argument("--compare", action="store_true",
                      help="one-shot mode: also run plain decoding on the same prompt and print the speedup")
    chat.add_argument("--compare-runs", type=int, default=3, metavar="N",
                      help="with --compare: time each mode N times, interleaved (speculative, plain, ...), and print "
                           "the median run of each (default 3: a shared machine's speed drifts between runs)")
    chat.add_argument("--plain", action="store_true", help="use plain decoding instead of speculative decoding")
    chat.add_argument("--highlight", action="store_true",
                      help="colour the accepted draft tokens (ANSI colours; the base model's own tokens stay plain)")
    chat.add_argument("--no-warmup", action="store_true",
                      help="skip the short untimed warm-up generation that keeps start-up costs out of the timings")
    args = parser.parse_args(argv)
    if args.compare and args.prompt is None:
        parser.error("--compare needs --prompt")
    if args.compare and args.plain:
        parser.error("--compare already runs plain decoding: drop --plain")
    if args.compare_runs < 1:
        parser.error(f"--compare-runs must be at least 1, got {args.compare_runs}")
    return args


class Printer:
    """Writes streamed pieces, colouring accepted draft tokens when asked."""

    def __init__(self, out: TextIO, highlight: bool):
        self.out, self.highlight = out, highlight

    def piece(self, piece: Piece) -> None:
        text = f"{DRAFT_ANSI}{piece.text}{RESET_ANSI}" if self.highlight and piece.drafted else piece.text
        self.out.write(text)
        self.out.flush()

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def answer(model, messages: list[Message], sampling: Sampling, speculative: bool,
           printer: Printer | None) -> tuple[str, AnswerStats, bool]:
    """Generate (streaming to ``printer`` if given); returns text, stats and whether Ctrl-C stopped it.

    A stopped answer's stats count the tokens streamed and the time until the stop."""
    text: list[str] = []
    stats = AnswerStats()
    begin = time.perf_counter()
    try:
        for update in stream_answer(model, messages, sampling, speculative=speculative):
            stats = update.stats
            for piece in update.pieces:
                text.append(piece.text)
                if printer:
                    printer.piece(piece)
    except KeyboardInterrupt:
        wall = time.perf_counter() - begin
        stats = replace(stats, wall_time=wall, tokens_per_second=stats.new_tokens / wall if wall > 0 else 0.0)
        return "".join(text), stats, True
    return "".join(text), stats, False


def warm_up(model, speculative: bool, plain: bool) -> None:
    """A few untimed tokens in each mode that will be timed (first calls pay one-time costs)."""
    messages = [{"role": "user", "content": "Hello"}]
    for mode, wanted in ((True, speculative), (False, plain)):
        if wanted:
            answer(model, messages, Sampling(max_new_tokens=4), mode, None)


def stats_line(stats: AnswerStats, speculative: bool) -> str:
    return stats.summary("jakiro" if speculative else "plain", with_tau=speculative)


def one_shot(model, args: argparse.Namespace, printer: Printer) -> int:
    messages = ([{"role": "system", "content": args.system}] if args.system else [])
    messages.append({"role": "user", "content": args.prompt})
    sampling, speculative = sampling_from_args(args), not args.plain
    if not args.no_warmup:
        warm_up(model, speculative, args.compare or args.plain)
    text, stats, stopped = answer(model, messages, sampling, speculative, printer)
    printer.line(" (stopped)" if stopped else "")
    if stopped or not args.compare:
        printer.line(stats_line(stats, speculative))
        tree_line(model, speculative, printer)
        return 130 if stopped else 0
    runs, plain_runs, plain_texts = [stats], [], []
    for index in range(args.compare_runs):  # interleaved, so drift of the machine's speed hits both modes alike
        if index:
            _, again, stopped = answer(model, messages, sampling, True, None)
            if stopped:
                break
            runs.append(again)
        plain_text, plain_stats, stopped = answer(model, messages, sampling, False, None)
        if stopped:
            break
        plain_runs.append(plain_stats)
        plain_texts.append(plain_text)
    if stopped:
        printer.line("(stopped)")
        return 130
    stats, plain_stats = median_run(runs), median_run(plain_runs)
    printer.line(stats_line(stats, True))
    tree_line(model, True, printer)
    printer.line(stats_line(plain_stats, False))
    if plain_stats.tokens_per_second > 0:
        spread = ""
        if len(runs) > 1:
            pairs = sorted(a.tokens_per_second / b.tokens_per_second for a, b in zip(runs, plain_runs))
            spread = f" (median of {len(runs)} interleaved runs each; run by run {pairs[0]:.2f}-{pairs[-1]:.2f} x)"
        printer.line(f"speedup: {stats.tokens_per_second / plain_stats.tokens_per_second:.2f} x{spread}")
    if sampling.temperature == 0:
        printer.line(f"same output as plain decoding: {'yes' if plain_texts[0] == text else 'no'}")
    return 0


def median_run(runs: list[AnswerStats]) -> AnswerStats:
    """The run with the median speed (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run.tokens_per_second)[(len(runs) - 1) // 2]


def tree_line(model, speculative: bool, printer: Printer) -> None:
    """Say which tree the auto budget (``--total-token -1``) chose."""
    if speculative and getattr(model, "budget_choice", None) is not None:
        printer.line(f"tree: {model.total_token} nodes, depth {model.depth} "
                     "(chosen for this head on this device; --total-token/--depth set them)")


def interactive(model, args: argparse.Namespace, printer: Printer, stdin: TextIO) -> int:
    sampling, speculative = sampling_from_args(args), not args.plain
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[Message] = []
    printer.line(f"jakiro chat: {args.base_model_path} + {head_label(args)} "
                 f"({'plain decoding' if args.plain else 'speculative decoding'}). "
                 "/clear forgets the conversation, /exit or Ctrl-D quits, Ctrl-C stops an answer.")
    if not args.no_warmup:
        warm_up(model, speculative, not speculative)
    while True:
        printer.out.write(">>> ")
        printer.out.flush()
        try:
            line, replaced = read_line(stdin)
        except KeyboardInterrupt:
            line, replaced = "", False
        if not line:
            printer.line()
            return 0
        if replaced:
            printer.line(REPLACEMENT_NOTE)
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/clear":
            history.clear()
            printer.line("(conversation cleared)")
            continue
        messages = system + history + [{"role": "user", "content": text}]
        try:
            reply, stats, stopped = answer(model, messages, sampling, speculative, printer)
        except JakiroError as error:
            printer.line(f"error: {error}")
            continue
        printer.line(" (stopped)" if stopped else "")
        printer.line(f"[{stats_line(stats, speculative)}]")
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]


def clean_arguments(args: argparse.Namespace) -> None:
    """Text options with bytes that are not UTF-8 (lone surrogates in ``sys.argv``) get U+FFFD, with a note."""
    for name in ("prompt", "system"):
        value = getattr(args, name)
        if value is not None:
            value, replaced = valid_text(value)
            setattr(args, name, value)
            if replaced:
                print(f"{REPLACEMENT_NOTE} (--{name})", file=sys.stderr)


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    args = parse_args(argv)
    out = stdout or sys.stdout
    printer = Printer(out, args.highlight)
    clean_arguments(args)
    quiet_loading()
    try:
        check_options(args)  # before the (slow) model load
        model = load_model(args)
        if args.prompt is not None:
            return one_shot(model, args, printer)
        return interactive(model, args, printer, stdin or sys.stdin)
    except JakiroError as error:
        print(f"jakiro: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
