"""Byte sizes as people type them: ``4096``, ``64K``, ``16M``, ``1G`` (see L{options.size})."""

from __future__ import annotations

from ..options import SIZE_FORMS, BadValue, size


def parse_size(text: str) -> int:
    """
    The number of bytes C{text} names.

    @raise ValueError: C{text} is not a size, or names zero bytes.
    """
    return size(text)


__all__ = ["SIZE_FORMS", "BadValue", "parse_size"]
