"""Byte sizes as people type them: ``4096``, ``64K``, ``16M``, ``1G``."""

from __future__ import annotations

import re

#: Multiples are binary (K = 1024), as in ``head -c`` and ``curl --max-filesize``.
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[kmg]?)(?:i?b)?", re.IGNORECASE)

SIZE_FORMS = "a whole number of bytes, optionally with a K, M or G suffix (4096, 64K, 16M, 1G)"


def parse_size(text: str) -> int:
    """
    The number of bytes C{text} names.

    Suffixes are case-insensitive and may be followed by ``B`` or ``iB``
    (``64k``, ``64KB``, ``64KiB`` all mean 65536).

    @raise ValueError: C{text} is not a size, or names zero bytes.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size; expected {SIZE_FORMS}")
    try:
        number = int(match["number"])
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise ValueError(f"{text!r} is not a size; expected {SIZE_FORMS}") from None
    size = number * _UNITS[match["unit"].lower()]
    if size < 1:
        raise ValueError(f"{text!r} is not a size of at least one byte")
    return size
