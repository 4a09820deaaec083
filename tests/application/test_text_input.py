"""Text that is not UTF-8 becomes U+FFFD instead of a tokenizer TypeError."""

from __future__ import annotations

import io

from jakiro.application.text_input import read_line, valid_text


def test_valid_text_keeps_good_text_and_replaces_undecodable_bytes():
    assert valid_text("héllo 日本 \ufffd") == ("héllo 日本 \ufffd", False)  # a real U+FFFD is no replacement
    assert valid_text("caf\udce9 \udcff hello") == ("caf\ufffd \ufffd hello", True)  # sys.argv's escapes
    assert valid_text("x\ud800y") == ("x?y", True)  # a lone surrogate that stands for no byte


def test_read_line_decodes_terminal_bytes_with_replacement():
    stream = io.TextIOWrapper(io.BytesIO("caf\xe9 ok\n".encode("latin-1") + "naïve\n".encode()), encoding="utf-8")
    assert read_line(stream) == ("caf\ufffd ok\n", True)
    assert read_line(stream) == ("naïve\n", False)
    assert read_line(stream) == ("", False)
    assert read_line(io.StringIO("plain\n")) == ("plain\n", False)
