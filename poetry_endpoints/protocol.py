"""The poetry protocol: read until the server closes the connection cleanly."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BYTES
from .errors import PoetryError
from .reasons import lost_error

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes received so far, after each read."""

Sink: TypeAlias = "Callable[[bytes], object] | IConsumer"
"""Where a streamed poem's bytes go: a callable taking them, or an `IConsumer`."""

Body: TypeAlias = "tuple[bytes, str | None]"
"""The bytes of a poem (empty when streamed), and the charset its server declared (HTTP only)."""

#: Once a poem has brought this many bytes, it is read C{BIG_READ} at a time
#: (C{STREAM_READ} when it is streamed to a sink).
BIG_POEM = 1024 * 1024
BIG_READ = 4 * 1024 * 1024
STREAM_READ = 1024 * 1024


@implementer(IPushProducer, IHalfCloseableProtocol)
class PoetryProtocol(Protocol):
    """
    Receives one poem over one connection.

    Each instance owns C{finished}, the Deferred of its own connection: it
    fires exactly once, with the poem's bytes on a clean close, or with a
    `PoetryError` (``incomplete``, ``too-large``, ``timeout``, ``tls``,
    ``cancelled``).  Once it has fired the protocol lets go of it and of the
    received data, so a finished protocol holds no poem in memory.

    Cancelling C{finished} aborts the connection.

    A C{progress} callback that raises fails C{finished} with its own
    exception (not a `PoetryError`) and aborts the connection; nothing is
    logged.

    With a C{sink}, the protocol streams: each read goes to the sink as it
    arrives, in order, instead of being kept, and C{finished} fires with
    C{b""} on a clean close.  A sink that is an `IConsumer` has the protocol
    registered as its (push) producer for the connection's life: when the
    consumer pauses it, the protocol stops reading from the connection and
    its idle timeout stops counting (the server is not the one being slow)
    until it is resumed; when the consumer stops it, the download fails with
    kind ``cancelled`` and the connection is aborted.  A sink that raises is
    treated as a C{progress} callback that raises.

    @ivar received: bytes received so far.
    """

    finished: Deferred[bytes] | None

    def __init__(
        self,
        source: str,
        clock: IReactorTime,
        *,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        progress: ProgressCallback | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.source = source
        self.received = 0
        self.finished = Deferred(self._cancel)
        self._clock = clock
        self._max_bytes = max_bytes
        self._idle_timeout = idle_timeout
        self._progress = progress
        # Chunks are joined once at the end: appending to one bytes object
        # (the classic `poem += data`) copies the whole poem on every read.
        self._chunks: list[bytes] = []
        self._idle_call: IDelayedCall | None = None
        self._read_bigger_at = BIG_POEM
        self._consumer: IConsumer | None = None
        self._write: Callable[[bytes], object] | None = None
        if sink is None:
            pass
        elif IConsumer.providedBy(sink):
            self._consumer = sink
            self._write = sink.write
        else:
            self._write = sink
        self._registered = False
        #: Whether the consumer has paused this protocol.
        self.paused = False
        self._input_end: Failure | None = None

    def connectionMade(self) -> None:
        if self.finished is None:
            return
        if self._consumer is not None:
            self._consumer.registerProducer(self, True)
            self._registered = True
        if self._idle_timeout is not None:
            self._idle_call = self._clock.callLater(self._idle_timeout, self._idled)

    def pauseProducing(self) -> None:
        """Stop reading until L{resumeProducing}: the consumer is full."""
        if self.paused or self.finished is None:
            return
        self.paused = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        """Read again, and count idle time again, after L{pauseProducing}."""
        if not self.paused or self.finished is None:
            return
        self.paused = False
        if self._idle_timeout is not None:
            self._idle_call = self._clock.callLater(self._idle_timeout, self._idled)
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        """The consumer wants no more: fail with kind ``cancelled`` and abort."""
        self.abort(
            PoetryError(
                self.source,
                "cancelled",
                f"the consumer stopped the stream after {self.received} bytes; connection aborted",
            )
        )

    def dataReceived(self, data: bytes) -> None:
        if self.finished is None:
            return  # already failed and aborting; late bytes are not part of a poem
        self.received += len(data)
        if self._max_bytes is not None and self.received > self._max_bytes:
            self.abort(
                PoetryError(
                    self.source,
                    "too-large",
                    f"poem exceeds the cap of {self._max_bytes} bytes "
                    f"({self.received} received); connection aborted",
                )
            )
            return
        if self.received >= self._read_bigger_at:
            self._read_bigger()
        if self._idle_call is not None:
            self._idle_call.reset(self._idle_timeout)  # type: ignore[arg-type]
        try:
            if self._write is None:
                self._chunks.append(data)
            else:
                self._write(data)
            if self._progress is not None:
                self._progress(self.received)
        except Exception:
            # The caller's bug, reported to the caller: the download
            # fails with the callback's own exception, instead of the
            # reactor logging it and the connection dying as incomplete.
            self._abort(Failure())

    def readConnectionLost(self) -> None:
        """
        The reactor saw the end of the input: a clean close, unless the
        socket holds a pending error.

        Twisted's poll and epoll reactors take an event that says "hang up"
        without "readable" for a clean close, and do not read the socket.
        A reset handled on another CPU while the reactor polls shows just
        that for an instant (the kernel marks the socket closed before it
        marks its input ended), and the reset's ECONNRESET then waits unread
        in the socket: reading it here keeps a reset from passing for the
        end of a whole poem.
        """
        self._input_end = close_at_end_of_input(self.transport)

    def writeConnectionLost(self) -> None:
        """Nothing to do: the poetry client never writes."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._input_end is not None:
            # How the input ended decides, not how closing our side went
            # after it (a Unix socket whose peer is gone reports a hang-up).
            reason = self._input_end
        if self.is_clean_close(reason):
            self._finish(b"".join(self._chunks))
        else:
            self._finish(Failure(lost_error(self.source, reason, self.received)))

    def abort(self, error: PoetryError) -> None:
        """
        Fail C{finished} with C{error} now and abort the connection (RST).

        Does nothing if C{finished} has already fired.
        """
        self._abort(Failure(error))

    def _abort(self, failure: Failure) -> None:
        if self.finished is None:
            return
        self._finish(failure)
        if self.transport is not None:
            self.abort_transport()

    def is_clean_close(self, reason: Failure) -> bool:
        """Whether C{reason} ends the poem whole: only a clean TCP close does."""
        return reason.check(ConnectionDone) is not None

    def abort_transport(self) -> None:
        """Cut the connection at once (RST), without waiting for buffers."""
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _read_bigger(self) -> None:
        # The reactor's TCP and Unix transports read bufferSize (64 KiB) per
        # call; a long poem takes fewer trips through the reactor in bigger
        # pieces.  Short poems keep the default: a big read buffer costs an
        # mmap per read, which many small downloads would pay.
        # A streamed poem reads less at a time: each piece is handed on and
        # freed at once, and the allocator reuses a freed 1 MiB buffer where
        # each 4 MiB one is fresh pages to fault in (64 MiB streamed to a
        # file: 0.055 s of CPU with 4 MiB reads, 0.031 s with 1 MiB; a
        # whole poem, kept until the end, gains a little from 4 MiB).
        self._read_bigger_at = sys.maxsize
        wanted = BIG_READ if self._write is None else STREAM_READ
        size = getattr(self.transport, "bufferSize", None)
        if isinstance(size, int) and size < wanted:
            setattr(self.transport, "bufferSize", wanted)  # noqa: B010

    def _idled(self) -> None:
        self._idle_call = None
        self.abort(
            PoetryError(
                self.source,
                "timeout",
                f"no data for {self._idle_timeout:g} s (idle timeout) "
                f"after {self.received} bytes; connection aborted",
            )
        )

    def _cancel(self, finished: Deferred[bytes]) -> None:
        self.abort(
            PoetryError(
                self.source,
                "cancelled",
                f"cancelled after {self.received} bytes; connection aborted",
            )
        )

    def _finish(self, result: bytes | Failure) -> None:
        if self._registered:
            self._registered = False
            self._consumer.unregisterProducer()  # type: ignore[union-attr]
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None
        finished, self.finished = self.finished, None
        # Let go of the chunks before firing: the callbacks decode the poem,
        # and chunks + bytes + text would be three copies at once.
        self._chunks = []
        if finished is None:
            return
        if isinstance(result, Failure):
            finished.errback(result)
        else:
            finished.callback(result)


def close_at_end_of_input(transport: Any) -> Failure:
    """
    How C{transport}'s input ended, read when the reactor says it has: a
    clean close (C{ConnectionDone}, and C{transport} is closed gently), or a
    reset (C{ConnectionLost}, and C{transport} is aborted) if its socket
    holds a pending error, which the reactor may not have read (see
    `PoetryProtocol.readConnectionLost`).
    """
    if _pending_error(transport):
        transport.abortConnection()
        return Failure(ConnectionLost())  # what reading the reset gives
    transport.loseConnection()
    return Failure(ConnectionDone())


def _pending_error(transport: object) -> int:
    """The socket error waiting in C{transport}'s socket (SO_ERROR), or 0."""
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return 0
    try:
        handle = get_handle()
        error: int = handle.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except (AttributeError, OSError, TypeError):
        return 0  # not a socket (a test transport, a TLS layer): nothing to read
    return error
