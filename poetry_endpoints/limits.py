"""
A bound on the connections a server works on at once.

Past the bound the listening ports stop accepting, so further clients wait in
the kernel's listen backlog, costing this process neither a descriptor nor
memory, and are accepted as slots free up.  Twisted accepts in bursts, so a
few connections may be accepted after the last slot is taken: they wait here
for a slot, without being served anything yet.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor


class ConnectionLimit:
    """
    At most C{maximum} connections served at once, across any number of ports.

    A connection takes a slot with L{acquire} and gives it back with
    L{release}.  While no slot is free, every port given to L{add_port}
    stops accepting; it starts again as soon as one is.
    """

    def __init__(self, reactor: IReactorFDSet, maximum: int) -> None:
        if maximum < 1:
            raise ValueError(f"the connection limit must be at least 1, not {maximum}")
        self.maximum = maximum
        self._reactor = reactor
        self._slots = DeferredSemaphore(maximum)
        self._ports: list[IReadDescriptor] = []
        self._paused = False

    @property
    def in_use(self) -> int:
        """How many slots are taken."""
        return self.maximum - self._slots.tokens

    @property
    def waiting(self) -> int:
        """How many accepted connections wait for a slot."""
        return len(self._slots.waiting)

    @property
    def paused(self) -> bool:
        """Whether the ports have stopped accepting."""
        return self._paused

    def add_port(self, port: object) -> None:
        """
        Pause and resume C{port} with the others.

        A port that is not a reactor read descriptor cannot be paused; its
        extra connections wait in L{acquire} instead.
        """
        if not IReadDescriptor.providedBy(port):
            return
        reader: IReadDescriptor = port
        self._ports.append(reader)
        if self._paused:
            self._reactor.removeReader(reader)

    def remove_port(self, port: object) -> None:
        """Forget C{port}, before it stops listening, so it is never resumed after."""
        if port in self._ports:
            self._ports.remove(port)

    def acquire(self) -> Deferred[None]:
        """
        Fires when this connection has a slot.

        Cancelling it (the connection went away while waiting) gives up its
        place in the queue.
        """
        waiting = self._slots.acquire()
        self._update()
        return waiting.addCallback(lambda _: None)

    def release(self) -> None:
        """Give back a slot taken with L{acquire}."""
        self._slots.release()
        self._update()

    def _update(self) -> None:
        full = self._slots.tokens == 0
        if full and not self._paused:
            self._paused = True
            for port in self._ports:
                self._reactor.removeReader(port)
        elif not full and self._paused:
            self._paused = False
            for port in self._ports:
                self._reactor.addReader(port)
