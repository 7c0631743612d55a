"""
Name resolution shared by one client's downloads.

``HostnameEndpoint`` asks the reactor's resolver for every connection, and
the default resolver runs ``getaddrinfo`` in the thread pool: a thousand
sources on one host name cost a thousand thread round trips.  A
`PoetryClient` hands its endpoints a reactor whose resolver answers a name it
has already resolved from memory, and lets concurrent lookups of one name
share a single ``getaddrinfo``.  A name that did not resolve is remembered
too, for a shorter time: a thousand sources on a dead name would otherwise
cost one slow failed lookup per batch of connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import directlyProvides, implementer, providedBy

#: How long a resolved name is reused.  getaddrinfo does not tell the DNS
#: TTL; a minute covers a command-line run and keeps a long-lived proxy
#: following DNS changes.
DEFAULT_TTL = 60.0
#: How long a name that gave no address answers "no address" from memory.
#: Long enough for every source of a run on that name to share the one
#: failure (later batches start as soon as earlier ones fail); short enough
#: that a retry whose backoff has grown past it, or a long-lived proxy, asks
#: again.
DEFAULT_NEGATIVE_TTL = 5.0

_Key = tuple[str, int, tuple[Any, ...] | None, str]


@implementer(IHostResolution)
@dataclass
class _Resolution:
    name: str

    def cancel(self) -> None:
        """Nothing to stop: a shared lookup finishes for the others waiting on it."""


@dataclass
class _Lookup:
    waiting: list[IResolutionReceiver] = field(default_factory=list)
    addresses: list[IAddress] = field(default_factory=list)


@implementer(IResolutionReceiver)
class _Collector:
    def __init__(self, resolver: CachingResolver, key: _Key) -> None:
        self._resolver = resolver
        self._key = key

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        self._resolver._pending[self._key].addresses.append(address)

    def resolutionComplete(self) -> None:
        self._resolver._completed(self._key)


@implementer(IHostnameResolver)
class CachingResolver:
    """
    Wraps a reactor's resolver: each name is looked up once per C{ttl} seconds.

    A lookup that gave no address is remembered for C{negative_ttl} seconds;
    0 asks again every time.
    """

    def __init__(
        self,
        reactor: Any,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
    ) -> None:
        self._reactor = reactor
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache: dict[_Key, tuple[float, list[IAddress]]] = {}
        self._pending: dict[_Key, _Lookup] = {}

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """As L{IHostnameResolver.resolveHostName}: from memory, a shared lookup, or a new one."""
        key: _Key = (
            hostName,
            portNumber,
            tuple(addressTypes) if addressTypes is not None else None,
            transportSemantics,
        )
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._reactor.seconds():
            if cached[1]:
                _deliver(resolutionReceiver, cached[1])
            else:
                # A remembered failure fails the download at once; answered
                # here, inside the call, the next download waiting for its
                # slot would start and fail inside that one, and so on: a
                # thousand sources on a dead name would nest a thousand deep.
                self._reactor.callLater(0, _deliver, resolutionReceiver, cached[1])
            return resolution
        lookup = self._pending.get(key)
        if lookup is not None:
            lookup.waiting.append(resolutionReceiver)
            return resolution
        self._pending[key] = _Lookup([resolutionReceiver])
        # Looked up on every miss, so a resolver swapped in later is used.
        self._reactor.nameResolver.resolveHostName(
            _Collector(self, key), hostName, portNumber, addressTypes, transportSemantics
        )
        return resolution

    def _completed(self, key: _Key) -> None:
        lookup = self._pending.pop(key)
        ttl = self._ttl if lookup.addresses else self._negative_ttl
        if ttl > 0:
            self._cache[key] = (self._reactor.seconds() + ttl, lookup.addresses)
        for receiver in lookup.waiting:
            _deliver(receiver, lookup.addresses)


def _deliver(receiver: IResolutionReceiver, addresses: list[IAddress]) -> None:
    for address in addresses:
        receiver.addressResolved(address)
    receiver.resolutionComplete()


class ResolvingReactor:
    """
    The same reactor, with a L{CachingResolver} as its C{nameResolver}.

    Provides every interface the wrapped reactor provides, so endpoint
    parsers (plugins included) see no difference.
    """

    def __init__(self, reactor: Any, resolver: CachingResolver) -> None:
        self._reactor = reactor
        self.nameResolver = resolver
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def sharing_resolution(reactor: Any) -> Any:
    """C{reactor}, or a view of it whose name lookups are cached and shared."""
    if not IReactorPluggableNameResolver.providedBy(reactor):
        return reactor
    return ResolvingReactor(reactor, CachingResolver(reactor))
