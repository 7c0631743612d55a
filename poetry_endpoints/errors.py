"""The one exception the library raises, and the kinds of failure it names."""

from __future__ import annotations

from typing import Final, Literal, get_args

ErrorKind = Literal[
    "invalid-source",
    "connect-failed",
    "timeout",
    "incomplete",
    "too-large",
    "decode",
    "cancelled",
    "tls",
    "http-status",
]

#: Every kind, in the order the documentation lists them.
KINDS: Final[tuple[ErrorKind, ...]] = get_args(ErrorKind)

#: Kinds that a retry may cure; a timed-out attempt is deliberately not among them.
RETRYABLE: Final[frozenset[ErrorKind]] = frozenset({"connect-failed", "incomplete"})


class PoetryError(Exception):
    """
    A download that did not produce a whole poem.

    ``str(error)`` is one line: the source, then the reason, with anything
    unprintable in either escaped by L{one_line}.
    """

    def __init__(self, source: str, kind: ErrorKind, reason: str) -> None:
        super().__init__(source, kind, reason)
        self.source: str = source
        self.kind: ErrorKind = kind
        self.reason: str = " ".join(reason.split())

    def __str__(self) -> str:
        return f"{one_line(self.source)}: {one_line(self.reason)}"

    def __repr__(self) -> str:
        return f"PoetryError(source={self.source!r}, kind={self.kind!r}, reason={self.reason!r})"


def one_line(text: str) -> str:
    """
    C{text} with every character that is not printable shown as an escape.

    Controls (newlines and tabs included), the Unicode line and paragraph
    separators, the invisible formatting characters (bidi overrides such as
    U+202E among them), unassigned and private-use code points are spelled
    as in Python: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0001``.  A lone
    surrogate that stands for a byte which was not valid in the locale's
    encoding (how Python passes such a byte of a command-line argument) is
    shown as that byte, ``\\xNN``.
    The result is one line that cannot move a terminal's cursor, change its
    state or reorder what follows it.
    """
    # Printable text, the usual case, is returned as it is, without a copy.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for a byte
        return f"\\x{code - 0xDC00:02x}"
    # Python's own spelling: \t \n \r, \x1b, \u202e, \U000e0001.
    return repr(char)[1:-1]
