"""
From settings to a running server: the one place that builds the services.

``poetry-endpoints serve``/``proxy`` and the ``twist poetry``/``poetry-proxy``
plugins (``tap.py``, ``proxytap.py``) all come through here, so there is a
single server implementation however it is started.  Reading options is their
business (with `poetry_endpoints.options`); this module takes checked
settings (L{ServerConfig}, L{ProxyConfig}) and returns services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import addresses, options
from ..defaults import (
    DEFAULT_CACHE_SECONDS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BYTES,
    DEFAULT_NUM_BYTES,
    DEFAULT_PROXY_CACHE_MAX_BYTES,
    DEFAULT_PROXY_LISTEN,
    DEFAULT_PROXY_MAX_CLIENTS,
    DEFAULT_PROXY_TIMEOUT,
    DEFAULT_PROXY_WRITE_TIMEOUT,
)
from ..errors import PoetryError
from .faults import FaultyServerFactory
from .limits import ConnectionLimit, reset_refused_connections
from .poetry import PoemFile, PoetryServerFactory, load_poems
from .stopping import CutShortOnStop

_log = Logger()


class ConfigError(Exception):
    """Settings that cannot work; C{str()} is one line for the user."""


@dataclass(frozen=True)
class ServerConfig:
    """
    Everything ``serve`` and ``twist poetry`` are told.

    @ivar listen: server endpoint descriptions for the poetry protocol.
    @ivar poems: poem files served in turn; empty for the bundled poems.
    @ivar delay: seconds between writes; 0 sends each poem at once.
    @ivar num_bytes: bytes per write when slow.
    @ivar fault: a fault mode from L{FAULTS}, or C{None} to behave.
    @ivar http: server endpoint descriptions for HTTP (``/`` and ``/poems/NAME``).
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    poems: tuple[str, ...] = ()
    delay: float = 0.0
    num_bytes: int = DEFAULT_NUM_BYTES
    fault: str | None = None
    http: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyConfig:
    """
    Everything ``proxy`` and ``twist poetry-proxy`` are told.

    @ivar upstream: the source string each poem is fetched from.
    @ivar cache_seconds: how long a fetched poem of at most C{cache_max_bytes}
        is served again; 0 fetches for every connection (connections during
        one fetch still share it).
    @ivar cache_max_bytes: the largest poem kept in memory: cached for
        C{cache_seconds}, and shared with clients that arrive during its
        fetch.  Bigger poems are streamed to their fetch's clients only.  0:
        nothing is kept, and clients share a fetch only until its first byte.
    @ivar max_bytes: the largest upstream poem relayed; past it the fetch
        fails (C{too-large}) and its clients are reset.
    @ivar timeout: whole-attempt limit for each upstream fetch, or C{None}.
    @ivar idle_timeout: limit on upstream silence between reads, or C{None}.
    @ivar cacert: a PEM file whose CA is also trusted for C{tls:}/C{https:}.
    @ivar write_timeout: seconds a client may leave bytes untaken (its send
        buffer full, or the end of the poem unsent) before it is aborted
        (reset), or C{None} for no limit.
    @ivar max_clients: clients served at once, all listeners together; the
        others wait to be accepted.  C{None}: no limit.
    """

    upstream: str
    listen: tuple[str, ...] = (DEFAULT_PROXY_LISTEN,)
    cache_seconds: float = DEFAULT_CACHE_SECONDS
    cache_max_bytes: int = DEFAULT_PROXY_CACHE_MAX_BYTES
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float | None = DEFAULT_PROXY_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    cacert: str | None = None
    write_timeout: float | None = DEFAULT_PROXY_WRITE_TIMEOUT
    max_clients: int | None = DEFAULT_PROXY_MAX_CLIENTS


def parse_listen(reactor: Any, description: str) -> IStreamServerEndpoint:
    """C{serverFromString}, with every way it can refuse turned into L{ConfigError}."""
    try:
        endpoint: IStreamServerEndpoint = options.listen_endpoint(reactor, description)
    except options.BadValue as e:
        raise ConfigError(str(e)) from None
    return endpoint


def _endpoint_type(description: str) -> str:
    return description.partition(":")[0].strip().lower()


def source_for(address: object, description: str = "", kind: str = "poetry") -> str:
    """
    A source string that reaches a server listening on C{address}.

    C{description} is the listen description (``ssl:`` gives a ``tls:``
    source or an ``https://`` URL); the string itself comes from
    L{addresses.source_for}, the one place that makes them.
    """
    return addresses.source_for(address, kind=kind, secure=_endpoint_type(description) == "ssl")


class ListeningService(Service):
    """
    Listens on one endpoint while running.

    L{when_listening} reports the source string that reaches it, or why it
    could not listen; either way the outcome is also logged, under C{label}
    (C{kind} when not given: C{"poetry"} or C{"http"}).
    """

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: IProtocolFactory,
        kind: str = "poetry",
        *,
        label: str | None = None,
        limit: ConnectionLimit | None = None,
    ) -> None:
        self.description = description
        self.kind = kind
        self.label = kind if label is None else label
        self.limit = limit
        self.endpoint = parse_listen(reactor, description)
        self.factory = factory
        self.port: IListeningPort | None = None
        self.source: str | None = None
        self._outcome: str | Failure | None = None
        self._waiters: list[Deferred[str]] = []
        self._pending: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._outcome = None
        self._pending = self.endpoint.listen(self.factory)
        self._pending.addCallbacks(self._listening, self._not_listening)

    def _listening(self, port: IListeningPort) -> None:
        self._pending = None
        self.port = port
        reset_refused_connections(port)
        if self.limit is not None:
            self.limit.add_port(port)
        self.source = source_for(port.getHost(), self.description, self.kind)
        _log.info("{label} listening on {source}", label=self.label, source=self.source)
        self._settle(self.source)

    def _not_listening(self, failure: Failure) -> None:
        self._pending = None
        _log.error(
            "could not listen on {description}: {reason}",
            description=self.description,
            reason=failure.getErrorMessage(),
        )
        self._settle(failure)

    def _settle(self, outcome: str | Failure) -> None:
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def when_listening(self) -> Deferred[str]:
        """Fires with the source that reaches this listener, or fails if it cannot listen."""
        waiter: Deferred[str] = Deferred()
        if self._outcome is None:
            self._waiters.append(waiter)
        elif isinstance(self._outcome, Failure):
            waiter.errback(self._outcome)
        else:
            waiter.callback(self._outcome)
        return waiter

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._pending is not None:
            self._pending.cancel()
        port, self.port = self.port, None
        if port is not None:
            if self.limit is not None:
                self.limit.remove_port(port)
            return port.stopListening()
        return None


def listeners(service: IService) -> list[ListeningService]:
    """The L{ListeningService}s of C{service}, in the order they were added."""
    if isinstance(service, ListeningService):
        return [service]
    if isinstance(service, MultiService):
        return [found for child in service for found in listeners(child)]
    return []


def when_listening(service: IService) -> Deferred[list[str]]:
    """Fires with every listener's source, in order, once all listen; fails if any cannot."""
    waiting = [listener.when_listening() for listener in listeners(service)]
    return gatherResults(waiting, consumeErrors=True).addErrback(_first_error)


def _first_error(failure: Failure) -> Failure:
    # gatherResults wraps the first failure; the caller wants the reason itself.
    first: Failure = failure.value.subFailure  # type: ignore[union-attr]
    return first


def server_factory(reactor: Any, config: ServerConfig, poems: Sequence[PoemFile]) -> Any:
    """The poetry protocol factory C{config} asks for, fault mode included."""
    try:
        if config.fault is not None:
            return FaultyServerFactory(
                poems, reactor, config.fault, delay=config.delay, num_bytes=config.num_bytes
            )
        return PoetryServerFactory(poems, reactor, delay=config.delay, num_bytes=config.num_bytes)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build_server(reactor: Any, config: ServerConfig) -> MultiService:
    """
    The companion server: one listener per C{config.listen} and C{config.http}.

    Its stop resets the poetry connections whose poem is unfinished (see
    `poetry_endpoints.servers.stopping`).  HTTP connections are left to the
    reactor: an HTTP client knows the poem's length from Content-Length, so
    a close before the end of the body is not taken for the whole.

    @raise ConfigError: a listen description does not parse, a poem file
        cannot be read, a setting is out of range.
    """
    if not config.listen and not config.http:
        raise ConfigError("nothing to listen on")
    try:
        poems = load_poems(config.poems)
    except OSError as e:
        raise ConfigError(f"cannot read poem file {e.filename}: {e.strerror or e}") from None
    factory = server_factory(reactor, config, poems)
    top = MultiService()
    # First, so that it stops last, once no listener accepts any more.
    top.addService(CutShortOnStop(factory.open_connections))
    for description in config.listen:
        top.addService(ListeningService(reactor, description, factory))
    if config.http:
        # twisted.web's server is loaded only for a server that has an HTTP
        # listener: a start-up cost for every command (and plugin) otherwise.
        from .web import make_site

        site = make_site(poems)
        for description in config.http:
            top.addService(ListeningService(reactor, description, site, kind="http"))
    return top


def build_proxy(reactor: Any, config: ProxyConfig) -> MultiService:
    """
    The poetry proxy: each connection is served the poem from C{config.upstream}.

    Its stop resets the clients whose poem is unfinished, including those
    still waiting for a slot (see `poetry_endpoints.servers.stopping`).

    @raise ConfigError: the upstream source or a listen description does not
        parse, a setting is out of range.
    """
    from ..client import PoetryClient
    from .proxy import PoetryProxyFactory, UpstreamCache

    if not config.listen:
        raise ConfigError("nothing to listen on")
    if config.cache_seconds < 0:
        raise ConfigError(f"--cache-seconds must be 0 or more, not {config.cache_seconds:g}")
    if config.cache_max_bytes < 0:
        raise ConfigError(f"--cache-max-bytes must be 0 or more, not {config.cache_max_bytes}")
    if config.max_bytes < 1:
        raise ConfigError(f"--max-bytes must be at least 1, not {config.max_bytes}")
    if config.max_clients is not None and config.max_clients < 1:
        raise ConfigError(f"--max-clients must be at least 1, not {config.max_clients}")
    if config.write_timeout is not None and not config.write_timeout > 0:
        raise ConfigError(f"--write-timeout must be positive, not {config.write_timeout:g}")
    try:
        # The proxy relays bytes: decoding is the business of its own clients,
        # and Latin-1 never fails, so a poem in any encoding passes through.
        client = PoetryClient(
            reactor,
            timeout=config.timeout,
            idle_timeout=config.idle_timeout,
            max_bytes=config.max_bytes,
            encoding="latin-1",
            cacert=config.cacert,
        )
        upstream = client.parse(config.upstream)
    except PoetryError as e:
        raise ConfigError(f"invalid upstream: {e}") from None
    except OSError as e:  # the cacert file
        raise ConfigError(
            f"cannot read --cacert {options.shown(config.cacert or '')}: {e.strerror or e}"
        ) from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    limit = None if config.max_clients is None else ConnectionLimit(reactor, config.max_clients)
    factory = PoetryProxyFactory(
        UpstreamCache(
            client, upstream, config.cache_seconds, cache_max_bytes=config.cache_max_bytes
        ),
        limit=limit,
        write_timeout=config.write_timeout,
    )
    top = MultiService()
    top.addService(CutShortOnStop(factory.open_connections))  # stops after the listeners
    for description in config.listen:
        top.addService(ListeningService(reactor, description, factory, label="proxy", limit=limit))
    return top
