"""
What a server does at its limits.

L{ConnectionLimit} bounds the connections a server works on at once.  Past
the bound the listening ports stop accepting, so further clients wait in the
kernel's listen backlog, costing this process neither a descriptor nor
memory, and are accepted as slots free up.  Twisted accepts in bursts, so a
few connections may be accepted after the last slot is taken: they wait here
for a slot, without being served anything yet.

L{reset_refused_connections} covers the process's own descriptor limit: the
clients Twisted has to turn away then are reset, not closed cleanly.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor

#: C{SO_LINGER} on with a zero timeout: C{close()} sends a reset.
_LINGER_RESET = struct.pack("ii", 1, 0)
#: C{SO_LINGER} off, the default: C{close()} sends what is left, then a FIN.
_LINGER_OFF = struct.pack("ii", 0, 0)


class _LingerOffServer(tcp.Server):
    """A TCP server connection whose socket closes normally again."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        # Before Twisted or any protocol sees the connection, so that nothing
        # written to it can be cut short by a reset at close.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        super().__init__(sock, *args, **kwargs)


def reset_refused_connections(port: object) -> bool:
    """
    Make a TCP listening port reset the clients it cannot serve.

    Out of file descriptors, Twisted's TCP port accepts the waiting clients
    with a descriptor it keeps in reserve and closes them at once
    (C{EMFILE} recovery).  A clean close after no data is a whole, empty
    poem to a client, so that close must be a reset.  The listening socket
    gets C{SO_LINGER} with a zero timeout, which the sockets it accepts
    inherit, so closing one sends a reset; every connection the port goes on
    to serve has the default restored as it is accepted.

    @return: whether C{port} was set up: only Twisted's own TCP ports are.
    """
    if not isinstance(port, tcp.Port) or port.transport is not tcp.Server:
        return False
    listening: socket.socket = port.socket
    if listening.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    # The connection class first: the port accepts only once the reactor runs.
    port.transport = _LingerOffServer
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    return True


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
