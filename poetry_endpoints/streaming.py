"""What `PoetryClient.stream` fires with, and how it counts what it delivered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IConsumer, IProducer
from zope.interface import implementer

from .protocol import Sink


@dataclass(frozen=True)
class Streamed:
    """
    A poem streamed whole to its sink.

    @ivar source: the source, as given.
    @ivar bytes: how many bytes the sink received.
    @ivar elapsed: seconds from the first attempt to the clean close.
    """

    source: str
    bytes: int
    elapsed: float


def is_sink(sink: object) -> bool:
    """Whether C{sink} can take a streamed poem: an `IConsumer`, or a callable."""
    return IConsumer.providedBy(sink) or callable(sink)


@implementer(IConsumer)
class Delivery:
    """
    The sink of one `PoetryClient.stream`, counting what it is given.

    It forwards producers to the sink only if the sink is an `IConsumer`: a
    callable sink never pauses the connection.  A sink with a
    C{charset_declared(charset)} method is told each HTTP response's
    declared charset before that response's first byte (see
    L{charset_declared}).
    """

    def __init__(self, sink: Sink) -> None:
        self.delivered = 0
        self._sink = sink
        self._consumer: IConsumer | None = None
        self._call: Callable[[bytes], object]
        if IConsumer.providedBy(sink):
            self._consumer = sink
            self._call = sink.write
        else:
            self._call = sink

    def started(self) -> bool:
        """Whether any byte reached the sink (an attempt after that is never retried)."""
        return self.delivered > 0

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self._consumer is not None:
            self._consumer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._consumer is not None:
            self._consumer.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.delivered += len(data)
        self._call(data)

    def charset_declared(self, charset: str | None) -> None:
        """
        Pass on an HTTP response's declared charset (C{None}: none declared),
        before its first byte, to a sink that has a C{charset_declared}
        method; others never hear of it.
        """
        declared = getattr(self._sink, "charset_declared", None)
        if declared is not None:
            declared(charset)
