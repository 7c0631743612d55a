"""
Fault modes: the companion server misbehaving on purpose, to test clients.

Each mode is a L{PoetryServerProtocol} that changes what is sent or how the
connection ends; L{FaultyServerFactory} hands one to every connection.
``--delay`` and ``--num-bytes`` apply to the modes that send something.
A stop of the server resets the connections of the modes that never finish
their poem (``stall``, ``hang``, ``reset``, ``endless``), as it does any
unfinished poem: a client must not take a stop for the end of the poem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from twisted.internet.interfaces import IDelayedCall, IPullProducer, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .poetry import DEFAULT_NUM_BYTES, PoemFile, PoetryServerFactory, PoetryServerProtocol

#: Inserted after the first line of the poem by ``bad-utf8``: a lone
#: continuation byte, two bytes that never occur in UTF-8, a truncated sequence.
BAD_UTF8: Final = b"\x80\xff\xfe\xc3(\n"

#: Sent before the poem by ``escapes``: set the window title (OSC), clear the
#: screen, home the cursor, turn the text red.
ESCAPES_BEFORE: Final = b"\x1b]0;pwned\x07\x1b[2J\x1b[H\x1b[31m"
#: Sent after the poem by ``escapes``: a C1 CSI (U+009B, valid UTF-8) clearing
#: the screen again, a DEL, a carriage return over the line, a bell, reset.
ESCAPES_AFTER: Final = "\u009b2J\x7f\rgotcha\x07\x1b[0m\n".encode()

#: Bytes written per turn by ``endless`` when there is no delay.
ENDLESS_CHUNK: Final = 64 * 1024


def partial(data: bytes) -> bytes:
    """The part of a poem that ``hang`` and ``reset`` send: the first half."""
    return data[: max(1, len(data) // 2)] if data else b""


def with_bad_utf8(data: bytes) -> bytes:
    """The poem with L{BAD_UTF8} after its first line."""
    head, newline, tail = data.partition(b"\n")
    return head + newline + BAD_UTF8 + tail


def with_escapes(data: bytes) -> bytes:
    """The poem between L{ESCAPES_BEFORE} and L{ESCAPES_AFTER}."""
    return ESCAPES_BEFORE + data + ESCAPES_AFTER


class _FaultProtocol(PoetryServerProtocol):
    """A poetry server protocol that misbehaves; C{mode} names how."""

    mode = ""
    doing = ""

    def announce(self) -> None:
        """Log what this connection is about to suffer."""
        self._log.info(
            "fault {mode}: {doing} ({poem}) to {peer}",
            mode=self.mode,
            doing=self.doing,
            poem=self.poem.name,
            peer=self.peer,
        )


class StallProtocol(_FaultProtocol):
    """Accepts the connection and never sends anything."""

    mode = "stall"
    doing = "accepting and never sending"

    def connectionMade(self) -> None:
        self.announce()


class HangProtocol(_FaultProtocol):
    """Sends the first half of the poem, then keeps the connection open, silent."""

    mode = "hang"
    doing = "sending half the poem, then hanging"

    def payload(self) -> bytes:
        return partial(self.poem.data)

    def finish(self) -> None:
        pass


@implementer(IPullProducer)
class _AbortWhenFlushed:
    """
    Aborts a transport once everything written to it has gone to the kernel.

    The transport asks a pull producer for more data exactly when its buffer
    has drained; that moment, rather than a timer, is when the RST goes out.
    """

    def __init__(self, protocol: PoetryServerProtocol) -> None:
        self._protocol = protocol
        self._registered = False

    def register(self) -> None:
        transport: Any = self._protocol.transport
        transport.registerProducer(self, False)
        self._registered = True

    def resumeProducing(self) -> None:
        if self._registered:  # the call made by registerProducer itself comes first
            self._protocol.transport.abortConnection()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass


class ResetProtocol(_FaultProtocol):
    """
    Sends the first half of the poem, then resets the connection.

    Twisted's C{abortConnection} closes a TCP socket with C{SO_LINGER} 0, which
    sends an RST.  Unix sockets have no reset: there the client sees an
    ordinary end of stream after the half poem.
    """

    mode = "reset"
    doing = "sending half the poem, then resetting"

    def payload(self) -> bytes:
        return partial(self.poem.data)

    def finish(self) -> None:
        if self._data:
            _AbortWhenFlushed(self).register()
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]


@implementer(IPullProducer)
class _Endless:
    """Writes the poem over and over, only when the transport asks for more."""

    def __init__(self, protocol: PoetryServerProtocol) -> None:
        self._protocol = protocol
        data = protocol.poem.data or b"."
        self._source = data * (ENDLESS_CHUNK // len(data) + 1)
        self._offset = 0
        self._next: IDelayedCall | None = None

    def resumeProducing(self) -> None:
        settings = self._protocol.settings
        if settings.delay > 0:
            if self._next is None:
                self._next = settings.clock.callLater(
                    settings.delay, self._write, settings.num_bytes
                )
        else:
            self._write(ENDLESS_CHUNK)

    def _write(self, size: int) -> None:
        self._next = None
        period = len(self._protocol.poem.data) or 1
        chunk = self._source[self._offset : self._offset + size]
        while len(chunk) < size:
            chunk += self._source[: size - len(chunk)]
        self._offset = (self._offset + size) % period
        self._protocol.transport.write(chunk)  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None


class EndlessProtocol(_FaultProtocol):
    """Sends the poem again and again, forever, at the pace the client reads."""

    mode = "endless"
    doing = "sending forever"

    def connectionMade(self) -> None:
        self.announce()
        self._producer = _Endless(self)
        self.transport.registerProducer(self._producer, False)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._producer.stopProducing()
        super().connectionLost(reason)


class BadUTF8Protocol(_FaultProtocol):
    """Sends the poem with invalid UTF-8 after its first line, then closes cleanly."""

    mode = "bad-utf8"
    doing = "sending invalid UTF-8"

    def payload(self) -> bytes:
        return with_bad_utf8(self.poem.data)


class EscapesProtocol(_FaultProtocol):
    """Sends the poem wrapped in terminal escape sequences, then closes cleanly."""

    mode = "escapes"
    doing = "sending terminal escape sequences"

    def payload(self) -> bytes:
        return with_escapes(self.poem.data)


class EmptyProtocol(_FaultProtocol):
    """Closes the connection cleanly before sending anything: an empty poem."""

    mode = "empty"
    doing = "closing before sending anything"

    def payload(self) -> bytes:
        return b""


#: Every fault mode, by the name given to ``--fault``.
FAULTS: Final[dict[str, type[PoetryServerProtocol]]] = {
    cls.mode: cls
    for cls in (
        StallProtocol,
        HangProtocol,
        ResetProtocol,
        EndlessProtocol,
        BadUTF8Protocol,
        EscapesProtocol,
        EmptyProtocol,
    )
}


class FaultyServerFactory(PoetryServerFactory):
    """A L{PoetryServerFactory} whose connections all misbehave as C{fault} says."""

    def __init__(
        self,
        poems: Sequence[PoemFile],
        clock: IReactorTime,
        fault: str,
        *,
        delay: float = 0.0,
        num_bytes: int = DEFAULT_NUM_BYTES,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault mode {fault!r}; choose from {', '.join(FAULTS)}")
        super().__init__(poems, clock, delay=delay, num_bytes=num_bytes)
        self.fault = fault
        self.protocol_class = FAULTS[fault]
