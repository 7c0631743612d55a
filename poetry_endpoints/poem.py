"""The result of one successful download."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Poem:
    """
    A whole poem: the server closed the connection cleanly (or sent a whole
    HTTP body) and the bytes decoded.

    @ivar source: the source string the poem came from, as the caller gave it.
    @ivar data: the bytes exactly as received.
    @ivar text: C{data} decoded.
    @ivar elapsed: seconds from the first connection attempt to the last byte,
        retries and back-off included, queueing for a connection slot excluded.
    @ivar encoding: the codec C{text} was decoded with.
    """

    source: str
    data: bytes = field(repr=False)
    text: str = field(repr=False)
    elapsed: float
    encoding: str = "utf-8"

    def __len__(self) -> int:
        return len(self.data)
