"""
One escaper for one-line messages, and JSON Lines that stay one line.

Unit tests of `poetry_endpoints.errors.one_line` (which the CLI uses too)
and of ``json_line``, then the CLI (in this process, tests/inprocess.py) with
a source whose bytes are not UTF-8, and with ``--encoding`` names that cannot decode a poem.
"""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inprocess import Ran, run_cli

from conftest import run_main
from poetry_endpoints.cli import output
from poetry_endpoints.cli.output import failure_line, json_line
from poetry_endpoints.errors import PoetryError, one_line

WAIT = 20.0
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: What str.splitlines() splits on, beyond the C0 controls.
LINE_BREAKS = "\x85\u2028\u2029"


def test_the_cli_uses_the_librarys_escaper() -> None:
    assert output.one_line is one_line


@given(st.text())
def test_one_line_leaves_only_printable_characters(text: str) -> None:
    escaped = one_line(text)
    assert escaped.isprintable()
    assert len(escaped.splitlines()) <= 1


UNPRINTABLE_CATEGORIES = ["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]


@given(st.text(alphabet=st.characters(blacklist_categories=UNPRINTABLE_CATEGORIES)))
def test_printable_text_is_left_alone(text: str) -> None:
    assert one_line(text) == text


def test_bidi_controls_and_line_separators_in_a_reason_are_escaped() -> None:
    reason = f"HTTP 500 {BIDI_CONTROLS} txt.exe{LINE_BREAKS}second line"
    line = failure_line(PoetryError("http://127.0.0.1:1/", "http-status", reason))
    assert not set(line) & set(BIDI_CONTROLS + LINE_BREAKS)
    assert "\\u202e" in line and "\\u2066" in line
    assert len(line.splitlines()) == 1


def test_str_of_an_error_escapes_its_reason_as_well_as_its_source() -> None:
    error = PoetryError("tcp:h:1\u202e", "decode", "charset \u202egnp.exe")
    assert str(error) == "tcp:h:1\\u202e: charset \\u202egnp.exe"
    assert error.reason == "charset \u202egnp.exe"  # the attribute keeps what was said


def test_a_byte_that_was_not_utf8_in_an_argument_is_shown_as_that_byte() -> None:
    source = os.fsdecode(b"unix:/tmp/\xff.sock")  # how Python passes such an argv
    assert one_line(source) == "unix:/tmp/\\xff.sock"
    assert one_line("\udc80 \ud800 \U000e0001") == "\\x80 \\ud800 \\U000e0001"


@given(st.text())
def test_json_lines_are_one_line_of_printable_utf8_that_round_trips(text: str) -> None:
    line = json_line({"poem": text})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = line.decode("utf-8")  # strict: a lone surrogate could not be encoded raw
    assert decoded[:-1].isprintable()
    assert decoded.splitlines() == [decoded[:-1]]
    assert json.loads(decoded) == {"poem": text}


def test_json_escapes_line_separators_and_bidi_controls() -> None:
    text = f"one{LINE_BREAKS}two {BIDI_CONTROLS} \x7f \U0001f600 \u00e9"
    line = json_line({"poem": text}).decode()
    assert "\\u2028" in line and "\\u202e" in line and "\\u0085" in line and "\\u007f" in line
    assert [c for c in line if unicodedata.category(c) in {"Zl", "Zp", "Cf", "Cc"}] == ["\n"]
    assert json.loads(line) == {"poem": text}


def _get(*args: str | bytes) -> Ran:
    # An argument's bytes reach main() as Python decodes a process's argv.
    return run_cli("get", "-q", *(os.fsdecode(arg) for arg in args), wait=WAIT)


@pytest.fixture
def not_utf8_source() -> Iterator[bytes]:
    """A Unix socket source whose path is not UTF-8 and does not exist."""
    folder = tempfile.mkdtemp(prefix="poetry-test-")
    try:
        yield b"unix:" + os.fsencode(folder) + b"/\xff.sock"
    finally:
        os.rmdir(folder)


def test_json_reports_a_source_that_is_not_utf8(not_utf8_source: bytes) -> None:
    result = _get("--json", not_utf8_source)
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    (line,) = result.stdout.decode("utf-8").splitlines()
    record = json.loads(line)
    assert os.fsencode(record["source"]) == not_utf8_source
    assert record["ok"] is False and record["kind"] == "connect-failed"
    assert "/\\xff.sock: " in record["message"]
    (failure,) = result.stderr.decode("utf-8").splitlines()
    assert failure.startswith("poetry-endpoints: unix:") and "/\\xff.sock: " in failure


def test_text_failure_line_names_a_source_that_is_not_utf8(not_utf8_source: bytes) -> None:
    result = _get(not_utf8_source)
    assert result.returncode == 1
    assert result.stdout == b""
    (failure,) = result.stderr.decode("utf-8").splitlines()
    assert failure.endswith("/\\xff.sock: could not connect: no such socket file [connect-failed]")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("rot13", "'rot13' is not a text encoding"),
        ("base64", "'base64' is not a text encoding"),
        ("punycode", "'punycode' is a codec for host names, too slow for a poem"),
        ("idna", "'idna' is a codec for host names, too slow for a poem"),
        ("no-such-codec", "'no-such-codec' is not a known encoding"),
        ("x" * 300, f"'{'x' * 39}\u2026' is not a known encoding"),
    ],
)
def test_encoding_must_be_a_text_codec_that_decodes_in_linear_time(
    name: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process: the usage error comes before the reactor runs.
    status, _, err = run_main(["get", "--encoding", name, "1"], capsys)
    assert status == 2
    assert err.splitlines()[-1].endswith(f"--encoding: {reason} (see --help)")
