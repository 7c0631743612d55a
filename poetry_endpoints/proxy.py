"""
The poetry proxy: a server that embeds the client.

Each connection is served the poem fetched from one upstream source with a
L{PoetryClient}, so any source the library accepts (``tcp:``, ``unix:``,
``tls:``, ``https://``...) can be put behind a plain poetry endpoint.  A poem
can be cached for a while, and connections that arrive while a fetch is in
flight share it.  When the upstream fails, the connection is aborted (RST on
TCP), never closed cleanly, so that clients report ``incomplete`` instead of
taking an empty poem for a whole one: only a clean close ends a whole poem.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from .client import PoetryClient, SourceLike
from .errors import PoetryError
from .poem import Poem
from .server import describe_peer

_log = Logger()


class UpstreamCache:
    """
    The upstream poem, fetched at most once at a time and kept C{cache_seconds}.

    @ivar fetches: how many upstream fetches have been started.
    """

    def __init__(self, client: PoetryClient, upstream: SourceLike, cache_seconds: float) -> None:
        if cache_seconds < 0:
            raise ValueError(f"cache_seconds must be 0 or more, not {cache_seconds}")
        self.client = client
        self.upstream = client.parse(upstream)
        self.cache_seconds = cache_seconds
        self.fetches = 0
        self._poem: Poem | None = None
        self._expires = 0.0
        self._fetching: Deferred[Poem] | None = None
        self._waiters: list[Deferred[Poem]] = []

    @property
    def name(self) -> str:
        """The upstream source string."""
        return self.upstream.name

    def get(self) -> Deferred[Poem]:
        """
        The upstream poem: cached, joined to the fetch in flight, or fetched now.

        Fails with the upstream's `PoetryError`.  Cancelling it gives up this
        caller's interest only; a fetch nobody waits for any more is cancelled.
        """
        if self._poem is not None and self.client.reactor.seconds() < self._expires:
            return succeed(self._poem)
        waiter: Deferred[Poem] = Deferred(self._forget)
        self._waiters.append(waiter)
        if self._fetching is None:
            self.fetches += 1
            _log.info("fetching {upstream}", upstream=self.name)
            self._fetching = self.client.get(self.upstream)
            self._fetching.addBoth(self._fetched)
        return waiter

    def _forget(self, waiter: Deferred[Poem]) -> None:
        self._waiters.remove(waiter)
        if not self._waiters and self._fetching is not None:
            self._fetching.cancel()

    def _fetched(self, result: Poem | Failure) -> None:
        self._fetching = None
        waiters, self._waiters = self._waiters, []
        if isinstance(result, Poem):
            if self.cache_seconds > 0:
                self._poem = result
                self._expires = self.client.reactor.seconds() + self.cache_seconds
            for waiter in waiters:
                waiter.callback(result)
        else:
            for waiter in waiters:
                waiter.errback(result)


class PoetryProxyProtocol(Protocol):
    """Serves one connection the upstream poem, or aborts it if there is none."""

    def __init__(self, cache: UpstreamCache) -> None:
        self.cache = cache
        self._waiting: Deferred[Poem] | None = None
        self._peer = "?"

    def connectionMade(self) -> None:
        self._peer = describe_peer(self.transport.getPeer())  # type: ignore[union-attr]
        waiting = self.cache.get()
        self._waiting = waiting
        waiting.addCallbacks(self._relay, self._failed)

    def _relay(self, poem: Poem) -> None:
        self._waiting = None
        _log.info(
            "relaying {upstream} ({size} bytes) to {peer}",
            upstream=poem.source,
            size=len(poem.data),
            peer=self._peer,
        )
        self.transport.write(poem.data)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _failed(self, failure: Failure) -> None:
        self._waiting = None
        if failure.check(CancelledError):
            return  # our own client went away first; nothing to tell anyone
        error = failure.value
        if isinstance(error, PoetryError):
            _log.warn(
                "upstream {upstream} failed ({kind}): {reason}; aborting {peer}",
                upstream=error.source,
                kind=error.kind,
                reason=error.reason,
                peer=self._peer,
            )
        else:
            _log.failure(
                "upstream {upstream} failed; aborting {peer}",
                failure,
                upstream=self.cache.name,
                peer=self._peer,
            )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()


class PoetryProxyFactory(ServerFactory):
    """Builds a L{PoetryProxyProtocol} per connection, all sharing one L{UpstreamCache}."""

    noisy = False  # each connection is logged by its protocol instead

    def __init__(self, cache: UpstreamCache) -> None:
        self.cache = cache

    def buildProtocol(self, addr: Any) -> PoetryProxyProtocol:
        return PoetryProxyProtocol(self.cache)
