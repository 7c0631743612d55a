"""
The companion poetry server: one poem per connection, then a clean close.

With a delay it is the tutorial's *slow* poetry server, writing a few bytes
at a time so that clients can be watched working concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import cycle
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

DEFAULT_NUM_BYTES = 10


@dataclass(frozen=True)
class PoemFile:
    """A poem to serve: its name (for logs and HTTP paths) and its bytes."""

    name: str
    data: bytes


def bundled_poems() -> list[PoemFile]:
    """The original poems shipped with the package, in name order."""
    folder = resources.files("poetry_endpoints") / "poems"
    return sorted(
        (
            PoemFile(entry.name.removesuffix(".txt"), entry.read_bytes())
            for entry in folder.iterdir()
            if entry.name.endswith(".txt")
        ),
        key=lambda poem: poem.name,
    )


def load_poems(paths: Sequence[str]) -> list[PoemFile]:
    """Read poem files; with no paths, the bundled poems. Raises OSError."""
    if not paths:
        return bundled_poems()
    return [PoemFile(Path(p).stem, Path(p).read_bytes()) for p in paths]


class PoetryServerProtocol(Protocol):
    """Sends one poem, all at once or C{num_bytes} every C{delay} seconds."""

    _log = Logger()

    def __init__(self, poem: PoemFile, settings: PoetryServerFactory) -> None:
        self.poem = poem
        self.settings = settings
        self._offset = 0
        self._next: IDelayedCall | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self._log.info(
            "sending {poem} ({size} bytes) to {peer}",
            poem=self.poem.name,
            size=len(self.poem.data),
            peer=str(peer),
        )
        if self.settings.delay > 0:
            self._send_some()
        else:
            self.transport.write(self.poem.data)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _send_some(self) -> None:
        self._next = None
        end = self._offset + self.settings.num_bytes
        self.transport.write(self.poem.data[self._offset : end])  # type: ignore[union-attr]
        self._offset = end
        if self._offset >= len(self.poem.data):
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self._next = self.settings.clock.callLater(self.settings.delay, self._send_some)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None


class PoetryServerFactory(ServerFactory):
    """
    Serves C{poems} to successive connections, in turn.

    @param clock: schedules the slow writes.
    @param delay: seconds between writes; 0 sends each poem at once.
    @param num_bytes: bytes per write when slow.
    """

    def __init__(
        self,
        poems: Sequence[PoemFile],
        clock: IReactorTime,
        *,
        delay: float = 0.0,
        num_bytes: int = DEFAULT_NUM_BYTES,
    ) -> None:
        if not poems:
            raise ValueError("at least one poem is needed")
        if delay < 0:
            raise ValueError(f"delay must be 0 or more, not {delay}")
        if num_bytes < 1:
            raise ValueError(f"num_bytes must be at least 1, not {num_bytes}")
        self.poems = list(poems)
        self.clock = clock
        self.delay = delay
        self.num_bytes = num_bytes
        self._turns = cycle(self.poems)

    def buildProtocol(self, addr: Any) -> PoetryServerProtocol:
        return PoetryServerProtocol(next(self._turns), self)
