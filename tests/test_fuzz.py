"""
Fuzzing the size parser (issue 5 item 5): any text given to ``--max-bytes``
is either a size of at least one byte or a usage error that says so, never
another exception.  (Source strings are fuzzed in test_sources.py.)
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from poetry_endpoints.cli import build_parser
from poetry_endpoints.cli.sizes import parse_size

UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

_PIECES = st.sampled_from(
    ["0", "1", "9", "64", "16", "k", "K", "m", "M", "g", "G", "t", "b", "B", "i", "iB", "KiB",
     " ", "\t", "\n", "\u3000", ".", ",", "-", "+", "_", "e", "x", "0x", "²", "\u0661", "\uff11",
     "Ⅸ", "\x00", "9" * 5000]
)  # fmt: skip
SIZES = st.one_of(
    st.text(max_size=30),
    st.lists(_PIECES, max_size=8).map("".join),
    st.tuples(st.integers(min_value=-10, max_value=10**30), st.sampled_from(list(UNITS))).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
)


@settings(max_examples=1000, deadline=None)
@given(text=SIZES)
@example(text="9" * 5000)
@example(text="0K")
@example(text="")
def test_any_text_is_a_size_or_a_value_error_that_says_so(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as e:
        assert "is not a size" in str(e), str(e)
    else:
        assert isinstance(size, int) and size >= 1


@given(
    number=st.integers(min_value=1, max_value=10**12),
    unit=st.sampled_from(list(UNITS)),
    upper=st.booleans(),
    tail=st.sampled_from(["", "b", "B", "ib", "iB"]),
    space=st.sampled_from(["", " "]),
)
def test_every_written_size_means_what_it_says(
    number: int, unit: str, upper: bool, tail: str, space: str
) -> None:
    text = f"{space}{number}{space}{unit.upper() if upper else unit}{tail if unit else ''}"
    assert parse_size(text) == number * UNITS[unit]


@settings(max_examples=300, deadline=None)
@given(text=SIZES)
@example(text="-1")
@example(text="--json")
@example(text="--")  # Python < 3.12 argparse made it [], unchecked
def test_max_bytes_on_the_command_line_parses_or_is_a_usage_error(text: str) -> None:
    parser = build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(["get", f"--max-bytes={text}", "tcp:127.0.0.1:1"])
    except SystemExit as e:
        assert e.code == 2  # argparse's usage error
        assert "--max-bytes" in stderr.getvalue()
    else:
        assert args.max_bytes == parse_size(text) >= 1


def test_a_usage_error_for_max_bytes_has_no_traceback() -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit):
        build_parser().parse_args(["get", "--max-bytes", "9" * 5000, "tcp:127.0.0.1:1"])
    assert "is not a size" in stderr.getvalue()
    assert "Traceback" not in stderr.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["get", "--max-bytes=--", "tcp:127.0.0.1:1"],
        ["get", "-c--", "tcp:127.0.0.1:1"],
        ["get", "--encoding=--", "tcp:127.0.0.1:1"],
        ["serve", "--listen=--"],
    ],
)
def test_a_double_dash_option_value_is_a_usage_error(args: list[str]) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    assert exited.value.code == 2
    assert "expected one argument" in stderr.getvalue()
