"""
Lists of sources read from a file or stdin (``get -i FILE``).

One source a line; blank lines and lines whose first non-blank character is
``#`` are skipped.  Each source keeps where it came from (``FILE:LINE``) so
that an invalid one can be named by its line.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["MAX_LINE", "InputError", "Listed", "read_source_list"]

#: The longest line accepted, newline included: far beyond any real source,
#: and a bound on what one line of ``-i /dev/zero`` can make us hold.
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Listed:
    """A source's text and where it was read (C{None}: the command line)."""

    text: str
    origin: str | None = None


class InputError(Exception):
    """A source list could not be read; the message names it and says why."""


def shown_input_name(name: str) -> str:
    """How C{name} is shown in messages: ``stdin`` for ``-``."""
    return "stdin" if name == "-" else name


def read_source_list(name: str, stdin: BinaryIO | None) -> list[Listed]:
    """
    The sources listed in the file C{name}, or in C{stdin} for ``-``.

    Lines are decoded as the command line is (the file system encoding,
    undecodable bytes kept as surrogates), so a line holds the same source
    as the same bytes given as an argument.

    @raise InputError: the file cannot be read, or a line is too long.
    """
    shown = shown_input_name(name)
    try:
        if name == "-":
            if stdin is None:  # descriptor 0 was closed at start (`<&-`)
                raise OSError(errno.EBADF, "stdin is closed")
            return list(_sources(stdin, shown))
        with open(name, "rb") as file:
            return list(_sources(file, shown))
    except OSError as e:
        reason = e.strerror or str(e)
        raise InputError(f"cannot read --input {shown}: {reason[:1].lower()}{reason[1:]}") from None


def _sources(stream: BinaryIO, shown: str) -> Iterator[Listed]:
    number = 0
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise InputError(f"{shown}:{number}: line longer than {MAX_LINE} bytes")
        text = os.fsdecode(line).strip()
        if text and not text.startswith("#"):
            yield Listed(text, f"{shown}:{number}")
