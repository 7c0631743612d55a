"""
The values a user types for options, checked in one place.

``poetry-endpoints get``/``serve``/``proxy`` (argparse) and the ``twist
poetry``/``poetry-proxy`` plugins (``usage.Options``) read every option value
through the functions here, so the same text means the same thing whichever
way a server or a download is started.  Each function takes the text and
returns the value or raises L{BadValue}, whose message is one line; the two
adapters at the end turn that into each parser's own usage error.

The rules:

  - timeouts (C{--timeout}, C{--idle-timeout}, C{--write-timeout}) are a
    positive, finite number of seconds, or C{0}/C{none}/C{off} for no limit;
  - other durations (C{--delay}, C{--cache-seconds}) are 0 or more, finite;
  - counts are whole numbers with a minimum; C{--max-clients} also takes
    C{none} for no limit;
  - sizes are bytes with an optional K/M/G suffix, at least 1, except the
    proxy's C{--cache-max-bytes}, where C{0} means "keep nothing";
  - files must exist and be readable now, not when first used.

This module lives at the top of the package, not in ``cli/``, because the
servers' ``twist`` plugins (``servers/tap.py``, ``servers/proxytap.py``) use
it as much as the command line does, and the library must not import its
command line.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

from .errors import one_line

T = TypeVar("T")

#: Words that turn a timeout off, besides C{0}.
NO_LIMIT_WORDS = frozenset({"none", "off"})

LISTEN_FORMS = (
    "expected a Twisted server endpoint description such as tcp:10000, "
    "tcp:0:interface=127.0.0.1, tcp6:10000:interface=\\:\\:1 or unix:/path/to.sock"
)

#: Multiples are binary (K = 1024), as in ``head -c`` and ``curl --max-filesize``.
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[kmg]?)(?:i?b)?", re.IGNORECASE)

SIZE_FORMS = "a whole number of bytes, optionally with a K, M or G suffix (4096, 64K, 16M, 1G)"


class BadValue(ValueError):
    """An option value that cannot be used; C{str()} is one line, without the option's name."""


def shown(text: str) -> str:
    """C{text} quoted for a message, every unprintable character escaped."""
    return f"'{one_line(text)}'"


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"{shown(text)} is not {what}") from None
    if not math.isfinite(value):
        raise BadValue(f"{shown(text)} is not {what}: it must be finite")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    value = _number(text, "a number of seconds")
    if not value > 0:
        raise BadValue(f"{shown(text)}: seconds must be more than 0")
    return value


def timeout(text: str) -> float | None:
    """A limit in seconds, or C{None} (no limit) for C{0}, C{none} or C{off}."""
    if text.strip().lower() in NO_LIMIT_WORDS:
        return None
    value = _number(text, "a number of seconds, or none")
    if value == 0:
        return None
    if value < 0:
        raise BadValue(f"{shown(text)}: seconds must be more than 0 (0 or none: no limit)")
    return value


def duration(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    value = _number(text, "a number of seconds")
    if value < 0:
        raise BadValue(f"{shown(text)}: seconds must be 0 or more")
    return value


def count(minimum: int) -> Callable[[str], int]:
    """A whole number, C{minimum} or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # also more digits than int() converts
            raise BadValue(f"{shown(text[:40])} is not a whole number") from None
        if value < minimum:
            raise BadValue(f"{shown(text)}: must be at least {minimum}")
        return value

    parse.__name__ = f"count_from_{minimum}"
    return parse


def count_or_none(text: str) -> int | None:
    """A whole number, 1 or more, or C{None} (no limit) for C{none} or C{off}."""
    if text.strip().lower() in NO_LIMIT_WORDS:
        return None
    try:
        return count(1)(text)
    except BadValue as e:
        raise BadValue(f"{e} (none: no limit)") from None


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise BadValue(f"{shown(text[:40])} is not a size; expected {SIZE_FORMS}")
    try:
        number = int(match["number"])
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise BadValue(f"{shown(text[:40])} is not a size; expected {SIZE_FORMS}") from None
    return number * _UNITS[match["unit"].lower()]


def size(text: str) -> int:
    """
    The number of bytes C{text} names: ``4096``, ``64K``, ``16M``, ``1G``.

    Suffixes are case-insensitive and may be followed by ``B`` or ``iB``
    (``64k``, ``64KB``, ``64KiB`` all mean 65536).
    """
    value = _size(text)
    if value < 1:
        raise BadValue(f"{shown(text)} is not a size of at least one byte")
    return value


def size_from_0(text: str) -> int:
    """As L{size}, but C{0} is allowed (for a bound where 0 means "keep nothing")."""
    return _size(text)


def readable_file(text: str) -> str:
    """The path of a file that can be read now."""
    try:
        with open(text, "rb"):
            pass
    except OSError as e:
        raise BadValue(f"cannot read {shown(text)}: {e.strerror or e}") from None
    return text


def pem_file(text: str) -> str:
    """The path of a readable PEM file holding at least one certificate (a CA to trust)."""
    from .tls import trust_root

    try:
        trust_root(text)  # reads the file, or raises the OSError open() would
    except OSError as e:
        raise BadValue(f"cannot read {shown(text)}: {e.strerror or e}") from None
    except ValueError:
        raise BadValue(f"{shown(text)}: no PEM certificate found") from None
    return text


def listen(text: str) -> str:
    """A Twisted server endpoint description (``tcp:10000``, ``unix:/path``...)."""
    from twisted.internet.testing import MemoryReactor

    # Parsing needs a reactor, though nothing here listens; a stand-in keeps
    # the real one uninstalled while options are read, so that
    # ``twist --reactor`` can still choose it.
    listen_endpoint(MemoryReactor(), text)
    return text


def listen_endpoint(reactor: Any, text: str) -> IStreamServerEndpoint:
    """C{serverFromString(reactor, text)}, with every way it can refuse a L{BadValue}."""
    if text.partition(":")[0].strip().lower() == "unix" and not text[5:].strip():
        raise BadValue(f"invalid listen endpoint {shown(text)}: no socket path; {LISTEN_FORMS}")
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, text)
    except Exception as e:  # Twisted raises ValueError, TypeError, KeyError, OSError...
        raise BadValue(f"invalid listen endpoint {shown(text)}: {e}; {LISTEN_FORMS}") from None
    return endpoint


def fault(text: str) -> str:
    """The name of a fault mode of the companion server."""
    from .servers.faults import FAULTS

    if text not in FAULTS:
        raise BadValue(f"unknown fault {shown(text)}; choose from {', '.join(FAULTS)}")
    return text


def upstream(text: str) -> str:
    """A source string the proxy can fetch from (any form ``get`` accepts)."""
    from twisted.internet.testing import MemoryReactor

    from .errors import PoetryError
    from .sources import parse_source

    try:
        parse_source(MemoryReactor(), text)
    except PoetryError as e:
        raise BadValue(f"invalid upstream {e}") from None
    return text


def encoding(text: str) -> str:
    """The name of a codec poems can be decoded with."""
    from .decoding import UnusableCodec, poem_codec, shown_name

    try:
        poem_codec(text)
    except LookupError:
        raise BadValue(f"{shown_name(text)!r} is not a known encoding") from None
    except UnusableCodec as e:
        raise BadValue(f"{shown_name(text)!r} is {e}") from None
    return text


def for_argparse(parse: Callable[[str], T]) -> Callable[[str], T]:
    """C{parse} as an argparse C{type=}: a L{BadValue} becomes argparse's usage error."""

    def argparse_type(text: str) -> T:
        try:
            return parse(text)
        except BadValue as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    argparse_type.__name__ = parse.__name__
    return argparse_type


def for_twist(option: str, parse: Callable[[str], T]) -> Callable[[str], T]:
    """
    C{parse} as a ``usage.Options`` coerce function: a L{BadValue} becomes a
    C{UsageError} naming C{option} (``twist`` prints it and exits 64).
    """

    def coerce(text: str) -> T:
        try:
            return parse(text)
        except BadValue as e:
            raise usage.UsageError(f"{option}: {e}") from None

    coerce.__name__ = parse.__name__
    return coerce
