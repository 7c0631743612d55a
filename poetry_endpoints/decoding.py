"""
Which codecs may decode a poem, and how a codec's name is shown.

A poem is decoded on the reactor thread, in one go, once it is whole.  That
is only safe with a codec whose time grows linearly with the poem: every
text codec of Python's standard library is one (C code, or a table lookup in
C), except ``punycode`` and ``idna``, pure-Python codecs for host names that
are quadratic (400 KB of ``punycode`` takes seconds, 16 MiB over an hour),
during which the reactor, Ctrl-C included, would wait.  Codecs that are not
text encodings at all (``rot13``, ``base64``, ``zlib``...) are no way to
read a poem either.  Both are refused by name: cheaply, before any decoding.
"""

from __future__ import annotations

import codecs
from typing import Final

from ._private_apis import is_text_encoding
from .errors import PoetryError

#: Text codecs whose decoding time is not linear in the input.
NOT_LINEAR: Final[frozenset[str]] = frozenset({"punycode", "idna"})

#: Longest codec name shown whole in a message; a server chooses the name.
MAX_SHOWN_NAME: Final = 40


class UnusableCodec(ValueError):
    """A codec that exists but cannot decode a poem; C{str()} says what it is, to follow "is"."""


def poem_codec(name: str) -> codecs.CodecInfo:
    """
    The codec called C{name}, if it may decode a poem.

    @raise LookupError: no codec has that name.
    @raise UnusableCodec: it is not a text encoding, or it does not decode in
        linear time.
    """
    info = codecs.lookup(name)
    if not is_text_encoding(info):
        raise UnusableCodec("not a text encoding")
    if info.name in NOT_LINEAR:
        raise UnusableCodec("a codec for host names, too slow for a poem")
    return info


def shown_name(name: str) -> str:
    """C{name} for a message, cut to L{MAX_SHOWN_NAME} characters with an ellipsis."""
    if len(name) > MAX_SHOWN_NAME:
        return name[: MAX_SHOWN_NAME - 1] + "\u2026"
    return name


def check_choice(encoding: str | None, errors: str) -> None:
    """
    Refuse now, not on the first poem, a caller's C{encoding} (C{None}: none
    chosen) or C{errors} handler that cannot decode a poem.

    @raise LookupError: the codec or the error handler is unknown.
    @raise ValueError: the codec cannot decode a poem.
    """
    if encoding is not None:
        try:
            poem_codec(encoding)
        except UnusableCodec as e:
            raise ValueError(f"encoding {shown_name(encoding)!r} is {e}") from None
    codecs.lookup_error(errors)


def poem_decoding(
    source: str, chosen: str | None, declared: str | None
) -> tuple[str, codecs.CodecInfo]:
    """
    The codec a poem from C{source} is decoded with, and its name: C{chosen}
    (the caller's C{encoding}), else the charset the server C{declared},
    else UTF-8.

    Checked by name before any decoding: a codec the server names may be one
    that would hold the reactor for minutes (see `poetry_endpoints.decoding`).

    @raise PoetryError: of kind ``decode``, the codec is unknown or cannot
        decode a poem.
    """
    encoding = chosen or declared or "utf-8"
    try:
        return encoding, poem_codec(encoding)
    except LookupError:
        reason = f"the server declared unknown charset {shown_name(encoding)!r}"
        if chosen is not None:
            reason = f"unknown encoding {shown_name(encoding)!r}"
        raise PoetryError(source, "decode", reason) from None
    except UnusableCodec as e:
        if chosen is None:
            reason = f"the server declared charset {shown_name(encoding)!r}, which is {e}"
        else:
            reason = f"encoding {shown_name(encoding)!r} is {e}"
        raise PoetryError(source, "decode", reason) from None
