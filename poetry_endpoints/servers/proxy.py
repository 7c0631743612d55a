"""
The poetry proxy: a server that embeds the client.

Each connection is served the poem streamed from one upstream source with
L{PoetryClient.stream}, so any source the library accepts (``tcp:``,
``unix:``, ``tls:``, ``https://``...) can be put behind a plain poetry
endpoint.  The upstream's bytes are relayed to the clients as they arrive.
When the upstream fails, before or after some bytes were relayed, every
client of that fetch is aborted (RST on TCP; a plain close on a Unix socket,
which has no reset), never closed cleanly, so that clients report
``incomplete`` instead of taking a partial poem for a whole one: only a clean
close ends a whole poem.  For the same reason a stop of the proxy aborts every
client whose poem is unfinished, or not yet begun (see
`poetry_endpoints.servers.stopping`).

One fetch, many clients
=======================
Clients that arrive while a fetch is in flight share it (an L{UpstreamFetch}
fans the one upstream stream out to all of them).  A client that joins late
is first written the bytes fetched so far, then the rest as it comes: so the
fetch keeps what it has relayed, but only up to C{cache_max_bytes}.  Past
that, the fetch stops keeping bytes and takes no new clients: a client that
arrives then starts a fetch of its own.  A poem that ends within
C{cache_max_bytes} is kept for C{cache_seconds} and served from memory; a
bigger one is never cached.

Backpressure
============
The upstream is read as fast as the slowest client of its fetch takes the
bytes: when any client's connection has a full send buffer (Twisted pauses
the client's producer), reading from the upstream is paused (and its idle
timeout with it) until every client has caught up.  No client is given
bytes the others have not been given, so nothing is buffered per client
beyond its connection's own send buffer.  A client that stalls would stall
the others, so the write timeout applies while its buffer stays full: a
client that leaves bytes untaken for C{write_timeout} seconds (while paused,
or after the end of the poem until it is all sent) is aborted, and the
others go on.  The upstream's whole-attempt timeout still counts the time
paused for slow clients.

Memory is thus bounded by settings: per fetch at most C{cache_max_bytes}
kept for joiners, per client its send buffer (Twisted's 64 KiB pause mark
plus one upstream read, or the bytes-so-far written to a joiner, at most
C{cache_max_bytes}), one cached poem of at most C{cache_max_bytes}, and a
L{ConnectionLimit} on the clients served at once (hence on the fetches).
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..client import PoetryClient, SourceLike
from ..defaults import DEFAULT_PROXY_CACHE_MAX_BYTES
from ..errors import PoetryError
from ..streaming import Streamed
from .limits import ConnectionLimit
from .poetry import describe_peer
from .stopping import OpenConnections

_log = Logger()


class Subscriber(TypingProtocol):
    """What an L{UpstreamFetch} relays to: one client connection."""

    def deliver(self, chunks: list[bytes]) -> None:
        """Send these bytes of the poem, in order."""

    def finish(self) -> None:
        """The poem is whole: close cleanly once it is sent."""

    def fail(self, failure: Failure) -> None:
        """The upstream failed: abort."""


@implementer(IConsumer)
class UpstreamFetch:
    """
    One upstream stream fanned out to its subscribers.

    It is the stream's sink: it writes each piece to every subscriber, and
    keeps the pieces, while they total at most C{keep_max_bytes}, for
    subscribers that join later and for the cache.  The upstream connection
    is paused while any subscriber is paused.

    @ivar subscribers: the subscribers still relayed to.
    @ivar size: bytes received from the upstream so far.
    """

    def __init__(self, cache: UpstreamCache, keep_max_bytes: int) -> None:
        self.cache = cache
        self.keep_max_bytes = keep_max_bytes
        self.subscribers: list[Subscriber] = []
        self.size = 0
        self._kept: list[bytes] | None = []
        self._paused: set[Subscriber] = set()
        self._producer: IPushProducer | None = None
        self._upstream_paused = False
        self._ended = False
        self.streaming: Deferred[Streamed] | None = None

    def start(self) -> None:
        """Start the upstream stream."""
        self.streaming = self.cache.client.stream(self.cache.upstream, self)
        self.streaming.addBoth(self._ended_with)

    def join(self, subscriber: Subscriber) -> None:
        """Relay to C{subscriber}: the bytes so far now, then the rest."""
        assert self._kept is not None, "joined a fetch that no longer keeps its bytes"
        self.subscribers.append(subscriber)
        if self._kept:
            subscriber.deliver(list(self._kept))

    def leave(self, subscriber: Subscriber) -> None:
        """Stop relaying to C{subscriber}; the last one leaving cancels the fetch."""
        if subscriber not in self.subscribers:
            return
        self.subscribers.remove(subscriber)
        self._paused.discard(subscriber)
        if not self.subscribers and not self._ended:
            self._ended = True
            self.cache.ended(self)
            assert self.streaming is not None
            self.streaming.cancel()
        else:
            self._pace()

    def paused(self, subscriber: Subscriber) -> None:
        """C{subscriber}'s connection is full: pause the upstream."""
        if subscriber in self.subscribers:
            self._paused.add(subscriber)
            self._pace()

    def resumed(self, subscriber: Subscriber) -> None:
        """C{subscriber}'s connection has room again: resume if nobody else is full."""
        self._paused.discard(subscriber)
        self._pace()

    def _pace(self) -> None:
        want_paused = bool(self._paused)
        if self._producer is None or want_paused == self._upstream_paused:
            return
        self._upstream_paused = want_paused
        if want_paused:
            self._producer.pauseProducing()
        else:
            self._producer.resumeProducing()

    # IConsumer, for PoetryClient.stream: the upstream connection.

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        assert IPushProducer.providedBy(producer), "the upstream is a push producer"
        self._producer = producer
        self._upstream_paused = False
        self._pace()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._upstream_paused = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._kept is not None:
            if self.size <= self.keep_max_bytes:
                self._kept.append(data)
            else:
                # Too big to keep: late clients start their own fetch.
                self._kept = None
                self.cache.ended(self)
        for subscriber in list(self.subscribers):
            subscriber.deliver([data])

    def _ended_with(self, result: Streamed | Failure) -> None:
        subscribers, self.subscribers = self.subscribers, []
        self._paused.clear()
        if not self._ended:
            self._ended = True
            self.cache.ended(self)
        if isinstance(result, Streamed):
            if self._kept is not None:
                self.cache.keep(b"".join(self._kept))
            self._kept = None
            for subscriber in subscribers:
                subscriber.finish()
            return
        self._kept = None
        for subscriber in subscribers:
            subscriber.fail(result)
        if not subscribers:
            result.trap(CancelledError, PoetryError)


class UpstreamCache:
    """
    The upstream poem: streamed by one L{UpstreamFetch} at a time that new
    clients can join, and kept C{cache_seconds} if at most C{cache_max_bytes}.

    @ivar fetches: how many upstream fetches have been started.
    """

    def __init__(
        self,
        client: PoetryClient,
        upstream: SourceLike,
        cache_seconds: float,
        cache_max_bytes: int = DEFAULT_PROXY_CACHE_MAX_BYTES,
    ) -> None:
        if cache_seconds < 0:
            raise ValueError(f"cache_seconds must be 0 or more, not {cache_seconds}")
        if cache_max_bytes < 0:
            raise ValueError(f"cache_max_bytes must be 0 or more, not {cache_max_bytes}")
        self.client = client
        self.upstream = client.parse(upstream)
        self.cache_seconds = cache_seconds
        self.cache_max_bytes = cache_max_bytes
        self.fetches = 0
        self._poem: bytes | None = None
        self._expires = 0.0
        self._joinable: UpstreamFetch | None = None

    @property
    def name(self) -> str:
        """The upstream source string."""
        return self.upstream.name

    def cached(self) -> bytes | None:
        """The cached poem, if there is one still fresh."""
        if self._poem is not None and self.client.reactor.seconds() < self._expires:
            return self._poem
        self._poem = None
        return None

    def subscribe(self, subscriber: Subscriber) -> UpstreamFetch:
        """
        Relay the upstream poem to C{subscriber}: joining the fetch in flight
        if it still has every byte so far, or starting a fetch.
        """
        fetch = self._joinable
        if fetch is None:
            self.fetches += 1
            _log.info("fetching {upstream}", upstream=self.name)
            fetch = self._joinable = UpstreamFetch(self, self.cache_max_bytes)
            fetch.join(subscriber)
            fetch.start()
        else:
            fetch.join(subscriber)
        return fetch

    def ended(self, fetch: UpstreamFetch) -> None:
        """C{fetch} takes no new subscribers any more."""
        if self._joinable is fetch:
            self._joinable = None

    def keep(self, poem: bytes) -> None:
        """Cache a whole poem (of at most C{cache_max_bytes}) for C{cache_seconds}."""
        if self.cache_seconds > 0 and len(poem) <= self.cache_max_bytes:
            self._poem = poem
            self._expires = self.client.reactor.seconds() + self.cache_seconds


@implementer(IPushProducer)
class PoetryProxyProtocol(Protocol):
    """
    Relays the upstream poem to one connection, or aborts it if the upstream fails.

    With a L{ConnectionLimit}, nothing is fetched until the connection has a
    slot.  The protocol is its transport's producer: a full send buffer
    pauses the upstream (see L{UpstreamFetch}).  With a write timeout, a
    client that leaves bytes untaken that long is aborted: while its buffer
    stays full, or after the end of the poem until it is all sent.
    """

    def __init__(self, factory: PoetryProxyFactory) -> None:
        self.factory = factory
        self.cache = factory.cache
        self._slot: Deferred[None] | None = None
        self._has_slot = False
        self._fetch: UpstreamFetch | None = None
        self._deadline: IDelayedCall | None = None
        self._peer = "?"
        self._sent = 0
        self._full = False
        self._registered = False
        self.poem_sent = False

    def connectionMade(self) -> None:
        self.factory.open_connections.add(self)
        self._peer = describe_peer(self.transport.getPeer())  # type: ignore[union-attr]
        limit = self.factory.limit
        if limit is None:
            self._serve()
            return
        self._slot = limit.acquire()
        self._slot.addCallbacks(self._slot_taken, lambda failure: failure.trap(CancelledError))

    def _slot_taken(self, _: None) -> None:
        self._slot = None
        self._has_slot = True
        self._serve()

    def _serve(self) -> None:
        _log.info("relaying {upstream} to {peer}", upstream=self.cache.name, peer=self._peer)
        poem = self.cache.cached()
        if poem is not None:
            self.deliver([poem])
            self.finish()
            return
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._registered = True
        self._fetch = self.cache.subscribe(self)
        if self._full:  # the bytes so far already filled the send buffer
            self._fetch.paused(self)

    # Subscriber

    def deliver(self, chunks: list[bytes]) -> None:
        self._sent += sum(len(chunk) for chunk in chunks)
        self.transport.writeSequence(chunks)  # type: ignore[union-attr]

    def finish(self) -> None:
        _log.info(
            "relayed {upstream} ({size} bytes) to {peer}",
            upstream=self.cache.name,
            size=self._sent,
            peer=self._peer,
        )
        self._fetch = None
        self._stop_deadline()
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()  # type: ignore[union-attr]
        self.poem_sent = True
        self.transport.loseConnection()  # type: ignore[union-attr]
        self._start_deadline()

    def cut_short(self) -> None:
        """Abort the connection (a reset on TCP): the proxy is stopping."""
        self._stop_deadline()
        # No slot is taken, nor fetch started, for a connection being aborted.
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.cancel()
        fetch, self._fetch = self._fetch, None
        if fetch is not None:
            fetch.leave(self)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def fail(self, failure: Failure) -> None:
        self._fetch = None
        self._stop_deadline()
        error = failure.value
        if isinstance(error, PoetryError):
            _log.warn(
                "upstream {upstream} failed ({kind}): {reason}; aborting {peer}",
                upstream=error.source,
                kind=error.kind,
                reason=error.reason,
                peer=self._peer,
                sent=self._sent,
            )
        else:
            _log.failure(
                "upstream {upstream} failed; aborting {peer}",
                failure,
                upstream=self.cache.name,
                peer=self._peer,
            )
        self.transport.abortConnection()  # type: ignore[union-attr]

    # IPushProducer, for the transport

    def pauseProducing(self) -> None:
        self._full = True
        self._start_deadline()
        if self._fetch is not None:
            self._fetch.paused(self)

    def resumeProducing(self) -> None:
        self._full = False
        self._stop_deadline()
        if self._fetch is not None:
            self._fetch.resumed(self)

    def stopProducing(self) -> None:
        pass  # connectionLost follows, and leaves the fetch

    def _start_deadline(self) -> None:
        timeout = self.factory.write_timeout
        if timeout is not None and self._deadline is None:
            self._deadline = self.factory.clock.callLater(timeout, self._too_slow, timeout)

    def _stop_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _too_slow(self, timeout: float) -> None:
        self._deadline = None
        _log.warn(
            "{peer} did not take its poem within {timeout:g} s (--write-timeout); aborting it",
            peer=self._peer,
            timeout=timeout,
        )
        fetch, self._fetch = self._fetch, None
        if fetch is not None:
            fetch.leave(self)  # the others go on without waiting for this one
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.open_connections.discard(self)
        self._stop_deadline()
        fetch, self._fetch = self._fetch, None
        if fetch is not None:
            fetch.leave(self)
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.cancel()
        if self._has_slot:
            self._has_slot = False
            assert self.factory.limit is not None
            self.factory.limit.release()


class PoetryProxyFactory(ServerFactory):
    """
    Builds a L{PoetryProxyProtocol} per connection, all sharing one L{UpstreamCache}.

    @param limit: at most this many connections are served at once; the
        others wait (see L{ConnectionLimit}).  C{None}: no limit.
    @param write_timeout: seconds a client may leave bytes untaken (its send
        buffer full, or the end of the poem unsent) before it is aborted;
        C{None}: no limit.
    """

    noisy = False  # each connection is logged by its protocol instead

    def __init__(
        self,
        cache: UpstreamCache,
        *,
        limit: ConnectionLimit | None = None,
        write_timeout: float | None = None,
    ) -> None:
        if write_timeout is not None and not write_timeout > 0:
            raise ValueError(f"write_timeout must be positive, not {write_timeout}")
        self.cache = cache
        self.limit = limit
        self.write_timeout = write_timeout
        self.clock: IReactorTime = cache.client.reactor
        #: The connections not closed yet, which a stop of the proxy aborts
        #: unless their poem was all sent.
        self.open_connections = OpenConnections(self.clock)

    def buildProtocol(self, addr: Any) -> PoetryProxyProtocol:
        return PoetryProxyProtocol(self)
