"""User text from a terminal or the command line, made safe to tokenize.

Bytes that are not UTF-8 reach Python as lone surrogates (command-line arguments) or as a
`UnicodeDecodeError` (a strict stdin); tokenizers refuse both with a `TypeError`. Here such
bytes become U+FFFD (the replacement character), so one bad line never ends a chat.
"""

from __future__ import annotations

from typing import TextIO

REPLACEMENT_NOTE = "note: the input was not valid UTF-8; the undecodable bytes were replaced by \ufffd"


def valid_text(text: str) -> tuple[str, bool]:
    """``text`` with undecodable bytes (lone surrogates) replaced by U+FFFD, and whether any were."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        pass
    try:  # surrogate escapes stand for the original bytes: decode those bytes with replacement
        repaired = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # other lone surrogates (e.g. from JSON "\ud800")
        repaired = text.encode("utf-8", "replace").decode("utf-8")
    return repaired, True


def read_line(stream: TextIO) -> tuple[str, bool]:
    """One line of input ("" at end of input), decoded with replacement, and whether bytes were replaced."""
    raw = getattr(stream, "buffer", None)
    if raw is not None:  # a real terminal or pipe: decode the bytes ourselves, never strictly
        data = raw.readline()
        text = data.decode("utf-8", "replace")
        return text, "\ufffd" in text and "\ufffd".encode() not in data
    return valid_text(stream.readline())
