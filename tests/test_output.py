"""Unit tests of the CLI's output helpers: escaping, JSON lines, file names, sizes, files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poetry_endpoints.cli.output import (
    DirectoryOutput,
    TextOutput,
    escape_for_terminal,
    failure_line,
    file_names,
    json_line,
    one_line,
    safe_file_name,
)
from poetry_endpoints.cli.sizes import parse_size
from poetry_endpoints.errors import PoetryError
from poetry_endpoints.poem import Poem

CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


def test_terminal_escaping_keeps_newline_and_tab_only() -> None:
    text = "red \x1b[31m bell \x07 csi \x9b cr \r del \x7f\tok\n"
    assert escape_for_terminal(text) == (
        "red \\x1b[31m bell \\x07 csi \\x9b cr \\x0d del \\x7f\tok\n"
    )


@given(st.text())
def test_escaped_text_has_no_controls_but_layout(text: str) -> None:
    escaped = escape_for_terminal(text)
    assert not [c for c in escaped if c in CONTROLS and c not in "\n\t"]
    assert escaped.count("\n") == text.count("\n")


@given(st.text())
def test_one_line_has_no_controls_at_all(text: str) -> None:
    assert not [c for c in one_line(text) if c in CONTROLS]


def test_failure_line_names_source_reason_and_kind() -> None:
    error = PoetryError("tcp:127.0.0.1:1", "connect-failed", "could not connect: refused")
    line = failure_line(error)
    assert line == "poetry-endpoints: tcp:127.0.0.1:1: could not connect: refused [connect-failed]"


def test_failure_line_cannot_carry_a_terminal_sequence() -> None:
    error = PoetryError("http://x/\x1b]0;pwned\x07", "http-status", "HTTP 500 \x9b2J")
    assert "\x1b" not in failure_line(error)
    assert "\x9b" not in failure_line(error)
    assert "\\x1b" in failure_line(error)


@given(st.text())
def test_json_line_round_trips_and_escapes_del_and_c1(text: str) -> None:
    line = json_line({"poem": text})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = line.decode("utf-8")
    assert not [c for c in decoded[:-1] if c in CONTROLS]
    assert json.loads(decoded) == {"poem": text}


def test_safe_file_names() -> None:
    assert safe_file_name("tcp:127.0.0.1:10000") == "tcp_127.0.0.1_10000.txt"
    assert safe_file_name("unix:/run/poetry.sock") == "unix_run_poetry.sock.txt"
    assert safe_file_name("../../etc/passwd") == "etc_passwd.txt"
    assert safe_file_name("...") == "poem.txt"
    assert safe_file_name("") == "poem.txt"


@given(st.lists(st.text(), max_size=30))
def test_file_names_are_safe_and_unique(sources: list[str]) -> None:
    names = file_names(sources)
    assert len(names) == len(sources)
    assert len({n.casefold() for n in names}) == len(names)
    for name in names:
        assert name.endswith(".txt")
        assert not name.startswith((".", "-"))
        assert "/" not in name and "\\" not in name and "\0" not in name
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert len(name) <= 120


def test_repeated_sources_get_numbered_names() -> None:
    assert file_names(["tcp:h:1", "tcp:h:1", "tcp/h/1"]) == [
        "tcp_h_1.txt",
        "tcp_h_1-2.txt",
        "tcp_h_1-3.txt",
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("64K", 64 * 1024),
        ("64k", 64 * 1024),
        ("16M", 16 * 1024**2),
        ("1G", 1024**3),
        ("2KiB", 2048),
        ("3MB", 3 * 1024**2),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "0", "0K", "-1", "1.5M", "12X", "K", "1T", "1 0", "\u0661\u0662K", "\u00b2"]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def _poem(data: bytes, source: str = "tcp:127.0.0.1:1") -> Poem:
    return Poem(source, data, data.decode("utf-8"), 0.5)


def test_directory_output_renames_a_whole_file_into_place(tmp_path: Path) -> None:
    output = DirectoryOutput(tmp_path, ["tcp:127.0.0.1:1"])
    output.poem(0, _poem(b"whole\r\npoem\x1b"))
    assert sorted(os.listdir(tmp_path)) == ["tcp_127.0.0.1_1.txt"]
    assert (tmp_path / "tcp_127.0.0.1_1.txt").read_bytes() == b"whole\r\npoem\x1b"


def test_directory_output_leaves_nothing_when_a_write_fails(tmp_path: Path) -> None:
    output = DirectoryOutput(tmp_path, ["tcp:127.0.0.1:1"])
    # A directory in the way makes the final rename fail after the data is written.
    (tmp_path / "tcp_127.0.0.1_1.txt").mkdir()
    with pytest.raises(OSError):
        output.poem(0, _poem(b"poem\n"))
    assert sorted(os.listdir(tmp_path)) == ["tcp_127.0.0.1_1.txt"]
    assert not list((tmp_path / "tcp_127.0.0.1_1.txt").iterdir())


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def test_text_output_adds_a_missing_newline_and_keeps_bytes_off_a_terminal() -> None:
    sink = _Sink()
    output = TextOutput(sink, terminal=False)  # type: ignore[arg-type]
    output.poem(0, _poem(b"one\x1b[2J"))
    output.poem(1, _poem(b"two\n"))
    output.poem(2, _poem(b""))
    assert sink.data == b"one\x1b[2J\ntwo\n\n"


def test_text_output_escapes_on_a_terminal() -> None:
    sink = _Sink()
    output = TextOutput(sink, terminal=True)  # type: ignore[arg-type]
    output.poem(0, _poem("caf\u00e9 \x1b[2J \u009b\n".encode()))
    assert sink.data == "caf\u00e9 \\x1b[2J \\x9b\n".encode()
