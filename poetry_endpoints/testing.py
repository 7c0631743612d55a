"""
Helpers for testing code that uses poetry_endpoints.

Two ways to give the code under test a poetry server, both running the
package's own server (and its fault modes), so what your code meets is what
``poetry-endpoints serve`` would send:

- L{poetry_server} listens on a real endpoint (a free loopback TCP port by
  default, or a Unix socket) in the running reactor, for trial tests and
  anything else that runs a reactor::

      server = await poetry_server(reactor, b"a poem\\n")
      self.addCleanup(server.stop)
      poem = await PoetryClient(reactor).get(server.source)

- L{MemoryPoetrySource} is a client endpoint that connects in memory: no
  socket, no reactor, only a clock.  With a L{MemoryReactorClock
  <twisted.internet.testing.MemoryReactorClock>} a plain test drives
  everything by advancing the clock::

      clock = MemoryReactorClock()
      got = PoetryClient(clock).get(MemoryPoetrySource(clock, b"a poem\\n"))
      clock.advance(0)   # connects, sends, closes: `got` has fired

Both take C{delay} and C{num_bytes} (the slow server) and C{fault}, one of
the server's fault modes (``stall``, ``hang``, ``reset``, ``endless``,
``bad-utf8``, ``escapes``, ``empty``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any, Literal

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    NoProtocol,
)
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IListeningPort,
    IProducer,
    IProtocol,
    IProtocolFactory,
    IPullProducer,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from .servers.faults import FaultyServerFactory
from .servers.poetry import DEFAULT_NUM_BYTES, PoemFile, PoetryServerFactory
from .servers.service import parse_listen, source_for

__all__ = ["MemoryAddress", "MemoryPoetrySource", "PoetryServer", "poetry_server"]

#: Where L{poetry_server} listens unless told otherwise: a free port on loopback.
DEFAULT_LISTEN = "tcp:0:interface=127.0.0.1"


def _poem_files(poem: bytes | Sequence[bytes]) -> list[PoemFile]:
    poems = [poem] if isinstance(poem, bytes) else list(poem)
    if not poems:
        raise ValueError("at least one poem is needed")
    for data in poems:
        if not isinstance(data, bytes):
            raise TypeError(f"a poem is bytes, not {type(data).__name__}")
    return [PoemFile(f"poem-{number}", data) for number, data in enumerate(poems, 1)]


def _server_factory(
    poem: bytes | Sequence[bytes],
    clock: IReactorTime,
    delay: float,
    num_bytes: int,
    fault: str | None,
) -> PoetryServerFactory:
    poems = _poem_files(poem)
    if fault is None:
        return PoetryServerFactory(poems, clock, delay=delay, num_bytes=num_bytes)
    return FaultyServerFactory(poems, clock, fault, delay=delay, num_bytes=num_bytes)


class _Tracking(WrappingFactory):
    """Keeps the open connections of a server, and counts every one accepted."""

    noisy = False

    def __init__(self, wrapped: PoetryServerFactory) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.accepted = 0
        self._when_idle: list[Deferred[None]] = []

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        self.accepted += 1
        super().registerProtocol(p)  # type: ignore[no-untyped-call]

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        if not self.protocols:
            waiting, self._when_idle = self._when_idle, []
            for waiter in waiting:
                waiter.callback(None)

    def abort_all(self) -> Deferred[None]:
        """Abort every open connection; fires once each one is gone."""
        if not self.protocols:
            return succeed(None)
        idle: Deferred[None] = Deferred()
        self._when_idle.append(idle)
        for connection in list(self.protocols):
            connection.transport.abortConnection()
        return idle


class PoetryServer:
    """
    A poetry server started by L{poetry_server}, listening until L{stop}.

    @ivar source: a source string that reaches it (``tcp:127.0.0.1:PORT``,
        ``[::1]:PORT``, ``unix:PATH``), ready for L{PoetryClient.get
        <poetry_endpoints.PoetryClient.get>} or the command line.
    @ivar port: the listening port.
    """

    def __init__(self, port: IListeningPort, factory: _Tracking, description: str) -> None:
        self.port = port
        self.source = source_for(port.getHost(), description)
        self._factory = factory
        self._stopping: Deferred[None] | None = None
        self._stopped: Failure | Literal[False] | None = False
        self._waiting: list[Deferred[None]] = []

    @property
    def connections(self) -> int:
        """How many connections it has accepted so far (a retry is one more)."""
        return self._factory.accepted

    @property
    def open_connections(self) -> int:
        """How many of its connections are open now."""
        return len(self._factory.protocols)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and abort the connections still open.

        Fires when the port is closed and every connection is gone, so a
        trial test that waits for it leaves a clean reactor.  Calling it
        again gives the same outcome.
        """
        if self._stopping is None:
            steps: list[Deferred[Any]] = [
                maybeDeferred(self.port.stopListening),
                self._factory.abort_all(),
            ]
            self._stopping = gatherResults(
                steps,
                consumeErrors=True,
            ).addBoth(self._settle)
        if self._stopped is False:
            waiter: Deferred[None] = Deferred()
            self._waiting.append(waiter)
            return waiter
        return fail(self._stopped) if self._stopped is not None else succeed(None)

    def _settle(self, outcome: object) -> None:
        self._stopped = outcome if isinstance(outcome, Failure) else None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if self._stopped is None:
                waiter.callback(None)
            else:
                waiter.errback(self._stopped)


def poetry_server(
    reactor: Any,
    poem: bytes | Sequence[bytes],
    *,
    listen: str = DEFAULT_LISTEN,
    delay: float = 0.0,
    num_bytes: int = DEFAULT_NUM_BYTES,
    fault: str | None = None,
) -> Deferred[PoetryServer]:
    """
    Start a poetry server in C{reactor}.

    @param poem: the bytes each connection is sent; several poems are sent
        to successive connections in turn.
    @param listen: a server endpoint description (``tcp:0:interface=::1``,
        ``unix:/tmp/test.sock``); by default a free port on 127.0.0.1.
    @param delay: seconds between writes of C{num_bytes} bytes: the slow
        poetry server.  0 sends each poem at once.
    @param fault: misbehave on purpose: ``stall``, ``hang``, ``reset``,
        ``endless``, ``bad-utf8``, ``escapes`` or ``empty``.
    @return: fires with the running L{PoetryServer}, or fails if it cannot
        listen.  Stop it with L{PoetryServer.stop}.
    @raise ValueError: at once, for an unknown C{fault}, a negative
        C{delay}, a C{num_bytes} below 1 or an invalid C{listen}.
    """
    try:
        endpoint = parse_listen(reactor, listen)
    except Exception as e:  # ConfigError: a message for people, not a type to catch
        raise ValueError(str(e)) from None
    factory = _Tracking(_server_factory(poem, reactor, delay, num_bytes, fault))
    listening: Deferred[IListeningPort] = endpoint.listen(factory)
    return listening.addCallback(PoetryServer, factory, listen)


@implementer(IAddress)
@dataclass(frozen=True)
class MemoryAddress:
    """The address of either end of an in-memory connection."""

    name: str

    def __str__(self) -> str:
        return self.name


_Ending = Literal["close", "abort"]


@implementer(ITransport, IConsumer)
class _MemoryTransport:
    """One end of an in-memory connection: what its protocol writes to."""

    def __init__(
        self, pipe: _Pipe, protocol: IProtocol, host: MemoryAddress, peer: MemoryAddress
    ) -> None:
        self.protocol = protocol
        self.disconnecting = False
        self.connected = True
        self.ending: _Ending | None = None
        self.buffer: list[bytes] = []
        self.producer: IProducer | None = None
        self.streaming = False
        self._pipe = pipe
        self._host = host
        self._peer = peer

    def write(self, data: bytes) -> None:
        if self.disconnecting:
            return  # as a real transport: writes after closing go nowhere
        self.buffer.append(data)
        self._pipe.schedule()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close cleanly once everything written so far is delivered."""
        if not self.disconnecting:
            self.disconnecting = True
            self.ending = "close"
            self._pipe.schedule()

    def abortConnection(self) -> None:
        """Drop what is not delivered yet; the other end sees the connection lost (a reset)."""
        if self.ending != "abort" and self.connected:
            self.disconnecting = True
            self.ending = "abort"
            self.buffer = []
            self._pipe.schedule()

    def getPeer(self) -> MemoryAddress:
        return self._peer

    def getHost(self) -> MemoryAddress:
        return self._host

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer
        self.streaming = streaming
        if not streaming:
            # As the reactor's transports do: ask a pull producer for data now,
            # and again each time what it wrote has been delivered.
            producer.resumeProducing()  # type: ignore[attr-defined]

    def unregisterProducer(self) -> None:
        self.producer = None

    def pull(self) -> None:
        """Ask a pull producer for more, now that its last writes are delivered."""
        if self.producer is not None and not self.streaming and not self.disconnecting:
            IPullProducer(self.producer).resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class _Pipe:
    """
    An in-memory connection between two protocols, moved along by a clock.

    Writes, closes and aborts are delivered by a call scheduled on the clock
    with no delay, never from within the call that made them, as a network
    would: a protocol is never re-entered from its own C{write}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        client: IProtocol,
        server: IProtocol,
        client_address: MemoryAddress,
        server_address: MemoryAddress,
    ) -> None:
        self._clock = clock
        self._next: IDelayedCall | None = None
        self.client = _MemoryTransport(self, client, client_address, server_address)
        self.server = _MemoryTransport(self, server, server_address, client_address)
        self.ended = False

    def schedule(self) -> None:
        if self._next is None and not self.ended:
            self._next = self._clock.callLater(0, self._step)

    def _step(self) -> None:
        self._next = None
        if self.ended:
            return
        for sender, receiver in ((self.server, self.client), (self.client, self.server)):
            if sender.buffer and receiver.ending != "abort":
                data = b"".join(sender.buffer)
                sender.buffer = []
                receiver.protocol.dataReceived(data)
                sender.pull()
        if self.client.ending == "abort" or self.server.ending == "abort":
            self._end()
        elif (self.client.ending or self.server.ending) and not (
            self.client.buffer or self.server.buffer
        ):
            self._end()

    def _end(self) -> None:
        self.ended = True
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        reasons = {
            self.client: self._reason(self.client, self.server),
            self.server: self._reason(self.server, self.client),
        }
        for transport in reasons:
            transport.connected = False
            transport.disconnecting = True
            transport.buffer = []
        # The server first: it learns of a reset or a close as soon as the
        # client does, and its clean-up (a slow write's timer) must not fire.
        for transport in (self.server, self.client):
            producer, transport.producer = transport.producer, None
            if producer is not None:
                producer.stopProducing()
            transport.protocol.connectionLost(reasons[transport])

    @staticmethod
    def _reason(this: _MemoryTransport, other: _MemoryTransport) -> Failure:
        if this.ending == "abort":
            return Failure(ConnectionAborted())
        if other.ending == "abort":
            return Failure(ConnectionLost())  # what a reset gives on a real socket
        return Failure(ConnectionDone())


@implementer(IStreamClientEndpoint)
class MemoryPoetrySource:
    """
    A client endpoint whose connections reach a poetry server in memory.

    Pass it wherever a source is taken (C{PoetryClient(clock).get(source)});
    to give it a name in errors, wrap it:
    C{EndpointSource("memory", source)}.  Each C{connect} builds a new
    connection to the same server, so retries and several downloads work;
    C{poem} may be several poems, sent to successive connections in turn.

    Everything happens on C{clock}: connecting, each write, the close.  With
    a L{MemoryReactorClock <twisted.internet.testing.MemoryReactorClock>},
    C{clock.advance(0)} delivers a poem sent at once; a slow one (C{delay})
    needs the clock moved on by C{delay} per write, e.g.
    C{clock.pump([delay] * writes)}.  With the real reactor it all just
    happens.

    The server is the package's own, so C{fault} behaves as it does on a
    socket: ``reset`` sends half the poem and then aborts, which the client
    sees as the connection lost (``incomplete``); ``stall`` and ``hang``
    never close (an idle timeout ends them); ``endless`` sends until the
    client's size cap aborts it.  Pass C{connect_error} (say,
    C{ConnectionRefusedError()}) for a server that cannot be reached.

    @param clock: schedules everything; a reactor or any C{IReactorTime}.
    @param poem: the bytes each connection is sent (empty by default);
        several poems are sent to successive connections in turn.
    @param delay: seconds between writes of C{num_bytes} bytes: the slow
        poetry server.  0 sends each poem at once.
    @param fault: misbehave on purpose: ``stall``, ``hang``, ``reset``,
        ``endless``, ``bad-utf8``, ``escapes`` or ``empty``.
    @param connect_error: fail every connection attempt with this instead.
    @raise ValueError: at once, for an unknown C{fault}, a negative
        C{delay} or a C{num_bytes} below 1.

    @ivar connections: how many connections have been made so far.
    """

    def __init__(
        self,
        clock: IReactorTime,
        poem: bytes | Sequence[bytes] = b"",
        *,
        delay: float = 0.0,
        num_bytes: int = DEFAULT_NUM_BYTES,
        fault: str | None = None,
        connect_error: Exception | None = None,
    ) -> None:
        self._clock = clock
        self._factory = _server_factory(poem, clock, delay, num_bytes, fault)
        self._connect_error = connect_error
        self._numbers = count(1)
        self.connections = 0
        self.address = MemoryAddress("memory-poetry-server")

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect C{protocolFactory}'s protocol to the server, one clock turn later."""
        pending: IDelayedCall | None = None

        def cancel(connecting: Deferred[IProtocol]) -> None:
            if pending is not None and pending.active():
                pending.cancel()
                connecting.errback(ConnectingCancelledError(self.address))

        connecting: Deferred[IProtocol] = Deferred(cancel)
        if self._connect_error is not None:
            pending = self._clock.callLater(0, connecting.errback, Failure(self._connect_error))
        else:
            pending = self._clock.callLater(0, self._connected, protocolFactory, connecting)
        return connecting

    def _connected(self, factory: IProtocolFactory, connecting: Deferred[IProtocol]) -> None:
        client_address = MemoryAddress(f"memory-poetry-client-{next(self._numbers)}")
        client = factory.buildProtocol(client_address)
        if client is None:
            connecting.errback(NoProtocol())
            return
        server = self._factory.buildProtocol(client_address)
        self.connections += 1
        pipe = _Pipe(self._clock, client, server, client_address, self.address)
        server.makeConnection(pipe.server)
        client.makeConnection(pipe.client)
        connecting.callback(client)
