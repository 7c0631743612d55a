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
