"""
From settings to a running server: the one place that builds the services.

``poetry-endpoints serve``/``proxy`` and the ``twist poetry``/``poetry-proxy``
plugins all come through here, so there is a single server implementation
however it is started.  The shape follows ``twisted/web/tap.py``: an
``Options`` class and a ``makeService`` for each plugin, built on functions the
command line shares.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from .. import addresses
from ..errors import PoetryError
from .faults import FAULTS, FaultyServerFactory
from .limits import ConnectionLimit, reset_refused_connections
from .poetry import DEFAULT_NUM_BYTES, PoemFile, PoetryServerFactory, load_poems
from .web import make_site

DEFAULT_LISTEN: Final = "tcp:10000:interface=127.0.0.1"
DEFAULT_PROXY_LISTEN: Final = "tcp:10001:interface=127.0.0.1"
#: The proxy's bounds, so that neither a stalled upstream nor clients that
#: never read can hold it for ever: the whole-fetch limit, the time a client
#: has to take its poem, and how many clients are served at once.
DEFAULT_PROXY_TIMEOUT: Final = 120.0
DEFAULT_PROXY_WRITE_TIMEOUT: Final = 60.0
DEFAULT_PROXY_MAX_CLIENTS: Final = 100
LISTEN_FORMS: Final = (
    "expected a Twisted server endpoint description such as tcp:10000, "
    "tcp:0:interface=127.0.0.1, tcp6:10000:interface=\\:\\:1 or unix:/path/to.sock"
)

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
    @ivar cache_seconds: how long a fetched poem is served again; 0 fetches
        for every connection (connections during one fetch still share it).
    @ivar timeout: whole-attempt limit for each upstream fetch, or C{None}.
    @ivar idle_timeout: limit on upstream silence between reads, or C{None}.
    @ivar cacert: a PEM file whose CA is also trusted for C{tls:}/C{https:}.
    @ivar write_timeout: seconds a client has to take its whole poem once it
        is written before it is aborted, or C{None}.
    @ivar max_clients: clients served at once, all listeners together; the
        others wait to be accepted.  C{None}: no limit.
    """

    upstream: str
    listen: tuple[str, ...] = (DEFAULT_PROXY_LISTEN,)
    cache_seconds: float = 0.0
    timeout: float | None = DEFAULT_PROXY_TIMEOUT
    idle_timeout: float | None = 60.0
    cacert: str | None = None
    write_timeout: float | None = DEFAULT_PROXY_WRITE_TIMEOUT
    max_clients: int | None = DEFAULT_PROXY_MAX_CLIENTS


def parse_listen(reactor: Any, description: str) -> IStreamServerEndpoint:
    """C{serverFromString}, with every way it can refuse turned into L{ConfigError}."""
    if description.partition(":")[0].lower() == "unix" and not description[5:].strip():
        raise ConfigError(
            f"invalid listen endpoint {description!r}: no socket path; {LISTEN_FORMS}"
        )
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    except Exception as e:  # Twisted raises ValueError, TypeError, KeyError, OSError...
        raise ConfigError(f"invalid listen endpoint {description!r}: {e}; {LISTEN_FORMS}") from None
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


def http_factory(poems: Sequence[PoemFile]) -> IProtocolFactory:
    """The HTTP site serving C{poems} (see L{make_site})."""
    return make_site(poems)


def build_server(reactor: Any, config: ServerConfig) -> MultiService:
    """
    The companion server: one listener per C{config.listen} and C{config.http}.

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
    for description in config.listen:
        top.addService(ListeningService(reactor, description, factory))
    if config.http:
        site = http_factory(poems)
        for description in config.http:
            top.addService(ListeningService(reactor, description, site, kind="http"))
    return top


def build_proxy(reactor: Any, config: ProxyConfig) -> MultiService:
    """
    The poetry proxy: each connection is served the poem from C{config.upstream}.

    @raise ConfigError: the upstream source or a listen description does not
        parse, a setting is out of range.
    """
    from ..client import PoetryClient
    from .proxy import PoetryProxyFactory, UpstreamCache

    if not config.listen:
        raise ConfigError("nothing to listen on")
    if config.cache_seconds < 0:
        raise ConfigError(f"--cache-seconds must be 0 or more, not {config.cache_seconds:g}")
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
            encoding="latin-1",
            cacert=config.cacert,
        )
        upstream = client.parse(config.upstream)
    except PoetryError as e:
        raise ConfigError(f"invalid upstream: {e}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    limit = None if config.max_clients is None else ConnectionLimit(reactor, config.max_clients)
    factory = PoetryProxyFactory(
        UpstreamCache(client, upstream, config.cache_seconds),
        limit=limit,
        write_timeout=config.write_timeout,
    )
    top = MultiService()
    for description in config.listen:
        top.addService(ListeningService(reactor, description, factory, label="proxy", limit=limit))
    return top


def _positive_or_none(name: str, text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = _number(name, text)
    if not value > 0:
        raise usage.UsageError(f"{name} must be positive, not {text!r}")
    return value


def _count_or_none(name: str, text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise usage.UsageError(f"{name} must be a whole number or none, not {text!r}") from None
    if value < 1:
        raise usage.UsageError(f"{name} must be at least 1, not {text!r}")
    return value


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise usage.UsageError(f"{name} must be a number, not {text!r}") from None


class _ListenOptions(usage.Options):
    """Shared ``--listen``: repeatable, replacing the default when given."""

    default_listen = DEFAULT_LISTEN

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Endpoint description to listen on (repeatable)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def listen(self) -> tuple[str, ...]:
        return tuple(self["listen"]) or (self.default_listen,)


class ServerOptions(_ListenOptions):
    """Options of ``twist poetry``."""

    synopsis = "[options] [POEM_FILE...]"
    longdesc = (
        "Serve a poem per connection, then close cleanly. With no POEM_FILE the poems "
        "bundled with poetry_endpoints are served; with several, connections get them in turn."
    )
    optParameters: ClassVar[list[list[str | None]]] = [
        ["delay", None, "0", "Seconds between writes (the slow poetry server)."],
        ["num-bytes", None, str(DEFAULT_NUM_BYTES), "Bytes per write when slow."],
        ["fault", None, None, f"Misbehave on purpose: one of {', '.join(FAULTS)}."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["http"] = []

    def opt_http(self, description: str) -> None:
        """Also serve the poems over HTTP on this endpoint (repeatable)."""
        self["http"].append(description)

    def parseArgs(self, *poems: str) -> None:
        self["poems"] = poems

    def postOptions(self) -> None:
        delay = _number("--delay", self["delay"])
        try:
            num_bytes = int(self["num-bytes"])
        except ValueError:
            raise usage.UsageError(
                f"--num-bytes must be a whole number, not {self['num-bytes']!r}"
            ) from None
        if self["fault"] is not None and self["fault"] not in FAULTS:
            raise usage.UsageError(
                f"unknown --fault {self['fault']!r}; choose from {', '.join(FAULTS)}"
            )
        self["config"] = ServerConfig(
            listen=self.listen(),
            poems=tuple(self["poems"]),
            delay=delay,
            num_bytes=num_bytes,
            fault=self["fault"],
            http=tuple(self["http"]),
        )


class ProxyOptions(_ListenOptions):
    """Options of ``twist poetry-proxy``."""

    default_listen = DEFAULT_PROXY_LISTEN
    synopsis = "--upstream SOURCE [options]"
    longdesc = (
        "Serve each connection the poem fetched from an upstream source (tcp:, unix:, tls:, "
        "http(s):// ...), cached for --cache-seconds. When the upstream fails, the connection "
        "is aborted rather than closed, so clients never take a partial poem for a whole one. "
        "Clients that never read are bounded by --write-timeout and --max-clients."
    )
    optParameters: ClassVar[list[list[str | None]]] = [
        ["upstream", "u", None, "Source string the poems are fetched from (required)."],
        ["cache-seconds", None, "0", "Serve a fetched poem again for this long (0: no cache)."],
        [
            "timeout",
            "t",
            f"{DEFAULT_PROXY_TIMEOUT:g}",
            "Whole-attempt limit per upstream fetch, seconds or none.",
        ],
        ["idle-timeout", None, "60", "Limit on upstream silence, seconds or none."],
        ["cacert", None, None, "Also trust this CA (PEM) for tls: and https: upstreams."],
        [
            "write-timeout",
            None,
            f"{DEFAULT_PROXY_WRITE_TIMEOUT:g}",
            "Abort a client that has not taken its whole poem this many seconds after it "
            "was written, seconds or none.",
        ],
        [
            "max-clients",
            None,
            str(DEFAULT_PROXY_MAX_CLIENTS),
            "Clients served at once, all listeners together; the others wait to be "
            "accepted. A number or none.",
        ],
    ]

    def postOptions(self) -> None:
        if not self["upstream"]:
            raise usage.UsageError("--upstream SOURCE is required")
        self["config"] = ProxyConfig(
            upstream=self["upstream"],
            listen=self.listen(),
            cache_seconds=_number("--cache-seconds", self["cache-seconds"]),
            timeout=_positive_or_none("--timeout", self["timeout"]),
            idle_timeout=_positive_or_none("--idle-timeout", self["idle-timeout"]),
            cacert=self["cacert"],
            write_timeout=_positive_or_none("--write-timeout", self["write-timeout"]),
            max_clients=_count_or_none("--max-clients", self["max-clients"]),
        )


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


#: ``twist`` exits 1 when a listener cannot listen, as ``serve`` does.
CANNOT_LISTEN_STATUS: Final = 1


def _stop_unless_listening(reactor: Any, service: MultiService) -> MultiService:
    # Under twist a listener that cannot listen would otherwise leave a
    # process running that serves nothing; the reason is already logged.
    def give_up(failure: Failure) -> None:
        reactor.addSystemEventTrigger("after", "shutdown", _exit_after_shutdown)
        reactor.callWhenRunning(reactor.stop)

    class _Watch(Service):
        def startService(self) -> None:
            Service.startService(self)
            when_listening(service).addErrback(give_up)

    service.addService(_Watch())
    return service


def _exit_after_shutdown() -> None:
    # twist and twistd have no way for a service to set the exit status
    # (twisted/twisted#11335), and they catch SystemExit raised while the
    # reactor runs.  By the "after" phase of shutdown every service has
    # stopped (Unix socket files are removed, the log is written), so the
    # process ends here, with a status a supervisor reads as a failure, as
    # ``twist web`` does when its port is taken.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream has nothing left to flush
    os._exit(CANNOT_LISTEN_STATUS)


def _or_exit(build: Any, reactor: Any, config: Any) -> MultiService:
    # twist turns a UsageError from option parsing into a message and exit
    # status 64, but lets one from makeService escape as a traceback; settings
    # that only fail once built (a poem file, a listen description) are usage
    # errors all the same.
    try:
        return build(reactor, config)  # type: ignore[no-any-return]
    except ConfigError as e:
        sys.stderr.write(f"Error: {e}\n")
        raise SystemExit(os.EX_USAGE) from None


def make_server_service(options: ServerOptions) -> MultiService:
    """``twist poetry``: the companion server for parsed L{ServerOptions}."""
    reactor = _global_reactor()
    return _stop_unless_listening(reactor, _or_exit(build_server, reactor, options["config"]))


def make_proxy_service(options: ProxyOptions) -> MultiService:
    """``twist poetry-proxy``: the poetry proxy for parsed L{ProxyOptions}."""
    reactor = _global_reactor()
    return _stop_unless_listening(reactor, _or_exit(build_proxy, reactor, options["config"]))
