"""
The poetry proxy: a server that embeds the client.

Each connection is served the poem fetched from one upstream source with a
L{PoetryClient}, so any source the library accepts (``tcp:``, ``unix:``,
``tls:``, ``https://``...) can be put behind a plain poetry endpoint.  A poem
can be cached for a while, and connections that arrive while a fetch is in
flight share it.  When the upstream fails, the connection is aborted (RST on
TCP), never closed cleanly, so that clients report ``incomplete`` instead of
taking an empty poem for a whole one: only a clean close ends a whole poem.

Each client's poem stays in memory until the client has taken it, so what
clients that never read can cost is bounded by two settings of
L{PoetryProxyFactory}: a write timeout, after which such a client is
aborted, and a L{ConnectionLimit} on the clients served at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..client import PoetryClient, SourceLike
from ..errors import PoetryError
from ..poem import Poem
from .limits import ConnectionLimit
from .poetry import describe_peer

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
    """
    Serves one connection the upstream poem, or aborts it if there is none.

    With a L{ConnectionLimit}, nothing is fetched until the connection has a
    slot.  With a write timeout, a client that has not taken the whole poem
    that many seconds after it was written is aborted: a client that never
    reads would otherwise keep its copy of the poem in memory for ever.
    """

    def __init__(self, factory: PoetryProxyFactory) -> None:
        self.factory = factory
        self.cache = factory.cache
        self._slot: Deferred[None] | None = None
        self._has_slot = False
        self._waiting: Deferred[Poem] | None = None
        self._deadline: IDelayedCall | None = None
        self._peer = "?"

    def connectionMade(self) -> None:
        self._peer = describe_peer(self.transport.getPeer())  # type: ignore[union-attr]
        limit = self.factory.limit
        if limit is None:
            self._fetch()
            return
        self._slot = limit.acquire()
        self._slot.addCallbacks(self._slot_taken, lambda failure: failure.trap(CancelledError))

    def _slot_taken(self, _: None) -> None:
        self._slot = None
        self._has_slot = True
        self._fetch()

    def _fetch(self) -> None:
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
        timeout = self.factory.write_timeout
        if timeout is not None:
            self._deadline = self.factory.clock.callLater(timeout, self._too_slow, timeout)
        self.transport.write(poem.data)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _too_slow(self, timeout: float) -> None:
        self._deadline = None
        _log.warn(
            "{peer} did not take its poem within {timeout:g} s (--write-timeout); aborting it",
            peer=self._peer,
            timeout=timeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

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
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
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
    @param write_timeout: seconds a client has to take the whole poem once it
        is written, after which it is aborted; C{None}: no limit.
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

    def buildProtocol(self, addr: Any) -> PoetryProxyProtocol:
        return PoetryProxyProtocol(self)
