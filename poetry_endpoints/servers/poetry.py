"""
The companion poetry server: one poem per connection, then a clean close.

When the server stops, a connection whose poem is unfinished is aborted
instead (see `poetry_endpoints.servers.stopping`): its client must not take
the part it got for the whole poem.

With a delay it is the tutorial's *slow* poetry server, writing a few bytes
at a time so that clients can be watched working concurrently.  The
misbehaving variants used to test clients live in `poetry_endpoints.servers.faults`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import cycle
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..defaults import DEFAULT_NUM_BYTES as DEFAULT_NUM_BYTES  # re-exported: faults, testing
from ..errors import one_line
from .stopping import OpenConnections


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


def describe_peer(address: object) -> str:
    """A short text for a connection's peer address, for log lines."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        # The connecting end of a Unix socket is normally unnamed; when it is
        # named, the client chose the name, so it is shown with the one
        # escaper: a newline in it cannot forge a log line.
        name = address.name
        text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
        return f"unix:{one_line(text)}" if text else "a unix socket client"
    return one_line(str(address))


class PoetryServerProtocol(Protocol):
    """
    Sends one poem, all at once or C{num_bytes} every C{delay} seconds.

    Subclasses change what is sent (L{payload}) and how the connection ends
    once it has been sent (L{finish}).

    @ivar poem_sent: whether the whole poem was written and the clean close
        begun; until then, a stop of the server aborts the connection.
    """

    _log = Logger()

    def __init__(self, poem: PoemFile, settings: PoetryServerFactory) -> None:
        self.poem = poem
        self.settings = settings
        self._data = b""
        self._offset = 0
        self._next: IDelayedCall | None = None
        self.poem_sent = False

    @property
    def peer(self) -> str:
        """The client's address, as text for logs."""
        return describe_peer(self.transport.getPeer())  # type: ignore[union-attr]

    def payload(self) -> bytes:
        """The bytes this connection is sent: the poem, unchanged."""
        return self.poem.data

    def finish(self) -> None:
        """Called once the payload is written: a clean close ends the poem."""
        self.poem_sent = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def cut_short(self) -> None:
        """Abort the connection (a reset on TCP): the server is stopping."""
        self._cancel_next()
        self.transport.abortConnection()  # type: ignore[union-attr]

    def makeConnection(self, transport: ITransport) -> None:
        # Before connectionMade, which may already end the connection.
        self.settings.open_connections.add(self)
        super().makeConnection(transport)  # type: ignore[no-untyped-call]

    def announce(self) -> None:
        """Log the connection and what it is sent."""
        self._log.info(
            "sending {poem} ({size} bytes) to {peer}",
            poem=self.poem.name,
            size=len(self._data),
            peer=self.peer,
        )

    def connectionMade(self) -> None:
        self._data = self.payload()
        self.announce()
        if self.settings.delay > 0:
            self._send_some()
        else:
            self.transport.write(self._data)  # type: ignore[union-attr]
            self.finish()

    def _send_some(self) -> None:
        self._next = None
        end = self._offset + self.settings.num_bytes
        self.transport.write(self._data[self._offset : end])  # type: ignore[union-attr]
        self._offset = end
        if self._offset >= len(self._data):
            self.finish()
        else:
            self._next = self.settings.clock.callLater(self.settings.delay, self._send_some)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_next()
        self.settings.open_connections.discard(self)

    def _cancel_next(self) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None


class PoetryServerFactory(ServerFactory):
    """
    Serves C{poems} to successive connections, in turn.

    @param clock: schedules the slow writes.
    @param delay: seconds between writes; 0 sends each poem at once.
    @param num_bytes: bytes per write when slow.

    @ivar open_connections: the connections not closed yet, which a stop of
        the server aborts unless their poem was all sent.
    """

    protocol_class: type[PoetryServerProtocol] = PoetryServerProtocol
    noisy = False  # each connection is logged by its protocol instead

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
        self.open_connections = OpenConnections(clock)

    def buildProtocol(self, addr: Any) -> PoetryServerProtocol:
        return self.protocol_class(next(self._turns), self)
