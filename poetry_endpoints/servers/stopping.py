"""
What a server does with the connections it is still working on when it stops.

A poetry client takes a clean close for the end of the poem, so a server that
stops must not close a connection cleanly while its poem is unfinished: the
client would take the part it got for the whole.  The reactor's own shutdown
closes every connection still open cleanly (and drops what it had not yet
written), so before it does, L{OpenConnections.stop} aborts each connection
whose poem is not finished: on TCP the client gets a reset, and reports the
poem ``incomplete``.  (A Unix socket has no reset: there the client sees an
ordinary end of stream.)  A connection whose poem was all sent keeps its clean
close.  Nothing waits for a slow client: the stop takes a turn or two of the
reactor, however many connections there are.
"""

from __future__ import annotations

from typing import Final
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger()

#: The longest a stop waits for the connections it aborted to close.  An
#: aborted TCP or Unix connection closes in the reactor's next turn; this only
#: bounds the wait for a transport that never reports its loss.
STOP_WAIT_LIMIT: Final = 2.0


class Cuttable(TypingProtocol):
    """A server connection as L{OpenConnections} sees it."""

    @property
    def poem_sent(self) -> bool:
        """Whether the whole poem was written and the clean close begun."""

    def cut_short(self) -> None:
        """Abort the connection (a reset on TCP), the poem unfinished."""


class OpenConnections:
    """
    The connections of one server that are not closed yet.

    A protocol L{add}s itself when its connection is made and L{discard}s
    itself when it is lost.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._open: set[Cuttable] = set()
        self._waiting: list[Deferred[None]] = []
        self._later: IDelayedCall | None = None
        self._limit: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: Cuttable) -> None:
        """C{connection} is open."""
        self._open.add(connection)

    def discard(self, connection: Cuttable) -> None:
        """C{connection} is closed."""
        self._open.discard(connection)
        if not self._open:
            self._settle()

    def stop(self) -> Deferred[None]:
        """
        Abort every connection whose poem is unfinished; fires once all are closed.

        A connection whose whole poem was written, but which is not closed
        yet, is given one turn of the reactor: if its last bytes were already
        with the kernel, the clean close completes in that turn; if they are
        still waiting for a slow client to take them, it is aborted then.
        """
        unfinished = [c for c in self._open if not c.poem_sent]
        if unfinished:
            _log.info(
                "stopping: resetting {count} connection(s) whose poem is unfinished",
                count=len(unfinished),
            )
        for connection in unfinished:
            connection.cut_short()
        if len(unfinished) < len(self._open) and self._later is None:
            self._later = self._clock.callLater(0, self._cut_the_rest)
        waiter: Deferred[None] = Deferred()
        if not self._open:
            waiter.callback(None)
            return waiter
        self._waiting.append(waiter)
        if self._limit is None:
            self._limit = self._clock.callLater(STOP_WAIT_LIMIT, self._settle)
        return waiter

    def _cut_the_rest(self) -> None:
        self._later = None
        flushing = [c for c in self._open if c.poem_sent]
        if flushing:
            _log.info(
                "stopping: resetting {count} connection(s) whose poem is not all taken",
                count=len(flushing),
            )
        for connection in list(self._open):
            connection.cut_short()

    def _settle(self) -> None:
        for call in (self._later, self._limit):
            if call is not None and call.active():
                call.cancel()
        self._later = self._limit = None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)


class CutShortOnStop(Service):
    """
    A service whose stop is L{OpenConnections.stop}.

    Added to a server's L{MultiService} before its listeners, it stops after
    them (a L{MultiService} stops its children last first), so no connection
    is accepted once the stop has begun.
    """

    def __init__(self, connections: OpenConnections) -> None:
        self.connections = connections

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.connections.stop()
