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

    ``str(error)`` is one line: the source, then the reason.
    """

    def __init__(self, source: str, kind: ErrorKind, reason: str) -> None:
        super().__init__(source, kind, reason)
        self.source: str = source
        self.kind: ErrorKind = kind
        self.reason: str = " ".join(reason.split())

    def __str__(self) -> str:
        return f"{_one_line(self.source)}: {self.reason}"

    def __repr__(self) -> str:
        return f"PoetryError(source={self.source!r}, kind={self.kind!r}, reason={self.reason!r})"


def _one_line(text: str) -> str:
    """C{text} with every unprintable character (newlines included) escaped."""
    # A source is whatever the user typed; a newline in it must not split
    # the one-line message.
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
