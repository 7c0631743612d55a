"""
Downloading poems: one reusable `PoetryClient`, and `get_poetry` for one-offs.

The data path of one download::

    source string ──parse_source──▶ endpoint ──connect (one-shot)──▶ PoetryProtocol
        ──finished──▶ bytes ──decode──▶ Poem            (or PoetryError at any step)
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Iterable, Sequence
from itertools import count
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast, runtime_checkable

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
    fail,
    succeed,
)
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from .decoding import UnusableCodec, poem_codec, shown_name
from .defaults import (
    DEFAULT_BACKOFF,
    DEFAULT_CONCURRENCY,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES,
)
from .errors import RETRYABLE, PoetryError
from .poem import Poem
from .protocol import PoetryProtocol, ProgressCallback
from .reasons import connect_error
from .resolving import sharing_resolution
from .sources import EndpointSource, HTTPSource, Source, parse_source
from .tls import trust_root

if TYPE_CHECKING:
    from .http import HTTPFetcher

#: Distinct source strings whose parse a client remembers.
_PARSED_CACHE_SIZE = 4096

@runtime_checkable
class PoetryReactor(Protocol):
    """
    What a L{PoetryClient} needs of its reactor: TCP connections and time.

    A type for the parts of C{IReactorTCP} and C{IReactorTime} the client
    relies on, since an intersection of zope interfaces cannot be spelled.
    Every Twisted reactor matches it (the global C{twisted.internet.reactor}
    included, and C{MemoryReactorClock} in tests); a bare C{Clock} or a
    string does not, for mypy and at run time.  C{unix:} sources also need
    C{IReactorUNIX}, and host names the reactor's name resolver, which every
    real reactor has.
    """

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: Any,  # endpoints call this, with factories of their own
        timeout: float = 30,
        bindAddress: tuple[str, int] | None = None,
    ) -> IConnector:
        """Connect a TCP client (what C{tcp:}, C{HOST:PORT} and HTTP sources use)."""

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> IDelayedCall:
        """Call C{callable} in C{delay} seconds (timeouts, retries)."""

    def seconds(self) -> float:
        """The current time in seconds (elapsed times)."""


SourceLike: TypeAlias = "str | IStreamClientEndpoint | Source"
Body: TypeAlias = "tuple[bytes, str | None]"
"""The bytes of a poem, and the charset its server declared (HTTP only)."""


class PoetryClient:
    """
    One object for many downloads that share the same settings.

    At most C{concurrency} downloads are connected (or waiting to retry) at
    once; further calls to L{get} wait for a free slot.  HTTP sources share
    one connection pool.

    @param reactor: a Twisted reactor (see L{PoetryReactor}); C{unix:}
        sources also need C{IReactorUNIX}.
    @param timeout: seconds allowed for each whole attempt, connecting
        included; C{None} for no limit.  A timed-out attempt is not retried.
    @param idle_timeout: seconds of silence allowed after connecting and
        between reads; C{None} for no limit.
    @param max_bytes: the largest poem accepted; a larger one is aborted as
        soon as it goes past the cap.  C{None} for no cap.
    @param encoding: codec for L{Poem.text}; C{None} means UTF-8, or the
        charset an HTTP server declares.
    @param errors: codec error handler, C{"strict"} or C{"replace"}.
    @param concurrency: downloads in flight at once.
    @param retries: further attempts after C{connect-failed} or
        C{incomplete}, C{backoff}, 2*C{backoff}, 4*C{backoff}... seconds apart.
    @param cacert: path of a PEM file whose CA is trusted, as well as the
        platform's, for C{tls:} and C{https:} sources.
    @param user_agent: the C{User-Agent} of HTTP requests (printable
        ASCII); C{None} for C{poetry-endpoints/VERSION}.
    @param allow_downgrade: follow redirects from an C{https:} source to
        plain C{http:}; refused (kind C{http-status}) by default.
    """

    def __init__(
        self,
        reactor: PoetryReactor,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        encoding: str | None = None,
        errors: str = "strict",
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = 0,
        backoff: float = DEFAULT_BACKOFF,
        cacert: str | None = None,
        user_agent: str | None = None,
        allow_downgrade: bool = False,
    ) -> None:
        if not isinstance(reactor, PoetryReactor):
            raise TypeError(
                "reactor must be a Twisted reactor (connectTCP, callLater, seconds), "
                f"not {type(reactor).__name__}"
            )
        _check_seconds("timeout", timeout)
        _check_seconds("idle_timeout", idle_timeout)
        if max_bytes is not None:
            _check_int("max_bytes", max_bytes, 1)
        _check_int("concurrency", concurrency, 1)
        _check_int("retries", retries, 0)
        if _real("backoff", backoff) < 0:
            raise ValueError(f"backoff must be 0 or more seconds, not {backoff!r}")
        if encoding is not None:
            codecs.lookup(encoding)  # LookupError now, not on the first poem
        codecs.lookup_error(errors)
        if cacert is not None:
            trust_root(cacert)  # OSError or ValueError now, not on the first TLS source
        #: The reactor, typed as the clock that Twisted's own timing APIs
        #: (C{deferLater}, C{addTimeout}) take: zope interfaces are nominal,
        #: and every reactor that matches L{PoetryReactor} provides it.
        self.reactor: IReactorTime = cast(IReactorTime, reactor)
        #: What endpoints are built with: the reactor, with name lookups
        #: shared by all of this client's downloads.
        self.endpoint_reactor = sharing_resolution(reactor)
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_bytes = max_bytes
        self.encoding = encoding
        self.errors = errors
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.cacert = cacert
        if user_agent is not None and not (
            user_agent.isascii() and user_agent.isprintable() and user_agent
        ):
            raise ValueError(f"user_agent must be non-empty printable ASCII, not {user_agent!r}")
        self.user_agent = user_agent
        self.allow_downgrade = allow_downgrade
        self._slots = DeferredSemaphore(concurrency)
        self._http: HTTPFetcher | None = None
        self._parsed: dict[str, Source] = {}

    def parse(self, source: SourceLike) -> Source:
        """Parse C{source} now; raises `PoetryError` ``invalid-source``."""
        if isinstance(source, EndpointSource | HTTPSource):
            return source
        if not isinstance(source, str):
            return parse_source(self.reactor, source, cacert=self.cacert)
        # Endpoints may be connected any number of times, so one parse per
        # distinct string serves every download of it (retries already reuse
        # theirs); parsing costs more than connecting on loopback.
        parsed = self._parsed.get(source)
        if parsed is None:
            parsed = parse_source(self.endpoint_reactor, source, cacert=self.cacert)
            if len(self._parsed) >= _PARSED_CACHE_SIZE:
                self._parsed.clear()
            self._parsed[source] = parsed
        return parsed

    def close(self) -> Deferred[None]:
        """
        Close the idle connections this client keeps for HTTP sources.

        Fires when they are closed; the client stays usable.  Call it when
        done, so no idle connection outlives the client in the reactor.
        """
        if self._http is None:
            return succeed(None)
        return self._http.close()

    def get(
        self, source: SourceLike, *, progress: ProgressCallback | None = None
    ) -> Deferred[Poem]:
        """
        Download one poem.

        @param source: a source string, an endpoint, or a parsed source.
        @param progress: called with the bytes received so far after each
            read.  If it raises, the connection is aborted at once and the
            download fails with that same exception (not a `PoetryError`, and
            never retried); nothing is logged.
        @return: fires once with a L{Poem} or fails with a `PoetryError`.
            Cancelling it at any moment aborts the connection and fails it
            with kind ``cancelled``.
        """
        try:
            parsed = self.parse(source)
        except PoetryError as e:
            return fail(e)
        return Deferred.fromCoroutine(self._get(parsed, progress))

    def get_many(self, sources: Iterable[SourceLike]) -> Deferred[list[Poem | PoetryError]]:
        """
        Download many poems, at most C{concurrency} at once.

        @return: fires with one L{Poem} or `PoetryError` per source, in the
            order given, and nothing else.  A download that fails with
            anything but a `PoetryError` is a bug, not a network problem:
            then, once every download has ended, it fails with the first such
            exception.  Cancelling it cancels every download.
        """
        downloads = [self.get(source).addErrback(_error_value) for source in sources]

        gathered: Deferred[list[Poem | PoetryError]] = Deferred(lambda _: cancel_all(downloads))
        DeferredList(downloads, consumeErrors=True).addCallback(_values).chainDeferred(gathered)
        return gathered

    async def _get(self, source: Source, progress: ProgressCallback | None) -> Poem:
        try:
            await self._slots.acquire()
        except CancelledError:
            raise _cancelled(source, "while waiting for a free connection slot") from None
        try:
            started = self.reactor.seconds()
            for attempt in count():
                try:
                    data, charset = await self._attempt(source, progress)
                    break
                except PoetryError as e:
                    if e.kind not in RETRYABLE or attempt >= self.retries:
                        raise
                try:
                    await deferLater(self.reactor, self.backoff * 2**attempt)
                except CancelledError:
                    raise _cancelled(source, "while waiting to retry") from None
            return self._poem(source, data, charset, self.reactor.seconds() - started)
        finally:
            self._slots.release()

    def _attempt(self, source: Source, progress: ProgressCallback | None) -> Deferred[Body]:
        attempt: Deferred[Body]
        if isinstance(source, HTTPSource):
            attempt = self._http_fetcher().fetch(source, progress)
        else:
            attempt = self._connect(source, progress)
        if self.timeout is not None:
            attempt.addTimeout(self.timeout, self.reactor, _timed_out(source, self.timeout))
        return attempt

    def _connect(self, source: EndpointSource, progress: ProgressCallback | None) -> Deferred[Body]:
        protocol = PoetryProtocol(
            source.name,
            self.reactor,
            max_bytes=self.max_bytes,
            idle_timeout=self.idle_timeout,
            progress=progress,
        )
        finished = protocol.finished
        assert finished is not None

        def connected(_: object) -> Deferred[bytes]:
            # From here on, cancelling the attempt cancels `finished`, which
            # aborts the connection.
            return finished

        cancelled = False

        def cancel(_: Deferred[Any]) -> None:
            # Endpoints report their own cancellation in different ways:
            # ConnectingCancelledError (not a CancelledError), and, while
            # HostnameEndpoint resolves, a DNSLookupError.  Only this flag
            # tells a cancel from a real connection failure, which is retried.
            nonlocal cancelled
            cancelled = True
            connecting.cancel()

        def not_connected(failure: Failure) -> Failure:
            if cancelled or failure.check(CancelledError, ConnectingCancelledError):
                return Failure(_cancelled(source, "while connecting"))
            return Failure(connect_error(source.name, failure))

        connecting: Deferred[Any] = source.endpoint.connect(_OneShotFactory(protocol))
        attempt: Deferred[Any] = Deferred(cancel)
        connecting.chainDeferred(attempt)
        body: Deferred[bytes] = attempt.addCallbacks(connected, not_connected)
        return body.addCallback(_no_charset)

    def _http_fetcher(self) -> HTTPFetcher:
        if self._http is None:
            from .http import HTTPFetcher

            self._http = HTTPFetcher(
                self, allow_downgrade=self.allow_downgrade, user_agent=self.user_agent
            )
        return self._http

    def _poem(self, source: Source, data: bytes, charset: str | None, elapsed: float) -> Poem:
        encoding = self.encoding or charset or "utf-8"
        # Refused before decoding: a codec the server names may be one that
        # would hold the reactor for minutes (see poetry_endpoints.decoding).
        try:
            poem_codec(encoding)
        except LookupError:
            reason = f"the server declared unknown charset {shown_name(encoding)!r}"
            raise PoetryError(source.name, "decode", reason) from None
        except UnusableCodec as e:
            if self.encoding is None:
                reason = f"the server declared charset {shown_name(encoding)!r}, which is {e}"
            else:
                reason = f"encoding {shown_name(encoding)!r} is {e}"
            raise PoetryError(source.name, "decode", reason) from None
        try:
            text = data.decode(encoding, self.errors)
        except UnicodeDecodeError as e:
            raise PoetryError(
                source.name,
                "decode",
                f"not valid {shown_name(encoding)}: {e.reason} at byte {e.start} of {len(data)}",
            ) from None
        except UnicodeError as e:  # codecs such as undefined raise the base class
            reason = f"not valid {shown_name(encoding)}: {e}"
            raise PoetryError(source.name, "decode", reason) from None
        return Poem(source.name, data, text, elapsed, encoding)


class _OneShotFactory(Factory):
    """
    Builds the one protocol it was given, like C{connectProtocol}'s factory.

    Quiet, unlike that one: it logs no "Starting/Stopping factory" event per
    connection, which cost a quarter of the time of many small downloads.
    """

    noisy = False

    def __init__(self, protocol: PoetryProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> PoetryProtocol:
        return self._protocol


def cancel_all(downloads: Sequence[Deferred[Any]]) -> None:
    """Cancel downloads of one client, started in the order given."""
    # Newest first: cancelling a connected download frees its slot, and a
    # download still queued behind it would take the slot and start
    # connecting before its own cancel came.
    for download in reversed(downloads):
        download.cancel()


def get_poetry(
    reactor: PoetryReactor,
    source: SourceLike,
    *,
    timeout: float | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    encoding: str | None = None,
    errors: str = "strict",
    cacert: str | None = None,
) -> Deferred[Poem]:
    """Download one poem from C{source}; see L{PoetryClient} for the settings."""
    client = PoetryClient(
        reactor,
        timeout=timeout,
        idle_timeout=idle_timeout,
        max_bytes=max_bytes,
        encoding=encoding,
        errors=errors,
        cacert=cacert,
    )

    def closed(result: Poem | Failure) -> Deferred[Poem]:
        # A one-off leaves no idle HTTP connection behind in the reactor.
        return client.close().addCallback(lambda _: result)

    return client.get(source).addBoth(closed)


def _real(name: str, value: object) -> float:
    # bool is an int to Python, but timeout=True is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _check_seconds(name: str, value: object) -> None:
    if value is not None and not _real(name, value) > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")


def _check_int(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be {least} or more, not {value!r}")


def _cancelled(source: Source, when: str) -> PoetryError:
    return PoetryError(source.name, "cancelled", f"cancelled {when}")


def _timed_out(source: Source, timeout: float) -> Any:
    def convert(result: object, _timeout: float) -> Failure:
        return Failure(
            PoetryError(
                source.name,
                "timeout",
                f"no whole poem within {timeout:g} s (timeout); connection aborted",
            )
        )

    return convert


def _no_charset(data: bytes) -> Body:
    return data, None


def _values(
    results: Sequence[tuple[bool, object]],
) -> list[Poem | PoetryError] | Failure:
    values: list[Poem | PoetryError] = []
    for _, value in results:
        if isinstance(value, Failure):
            return value  # not a PoetryError: handed on, never listed as a result
        assert isinstance(value, Poem | PoetryError)
        values.append(value)
    return values


def _error_value(failure: Failure) -> PoetryError:
    failure.trap(PoetryError)
    return failure.value  # type: ignore[return-value]
