"""
Downloading poems: one reusable `PoetryClient`, and `get_poetry` for one-offs.

The data path of one download::

    source string ──parse_source──▶ Source ──its kind's Fetcher──▶ PoetryProtocol
        (endpoints: connect_poem = connectProtocol through a QuietEndpoint;
         http(s): treq, the body delivered to the protocol)
        ──finished──▶ bytes ──decode──▶ Poem        (get)
        or each read ──▶ sink, then a Streamed summary  (stream)
        (or PoetryError at any step)

`PoetryClient` only orchestrates: connection slots, retries, the
whole-attempt timeout, log events and decoding.  Each kind of source fetches
itself (`EndpointFetcher`, `http.HTTPFetcher`) with the client's one frozen
`ClientSettings`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterable, Sequence
from itertools import count
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
    runtime_checkable,
)

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
    fail,
    succeed,
)
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from .connect import connect_poem
from .decoding import poem_decoding, shown_name
from .defaults import (
    DEFAULT_BACKOFF,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONCURRENCY,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES,
)
from .errors import RETRYABLE, PoetryError
from .events import log_attempt, log_failure, log_retry
from .poem import Poem
from .protocol import Body, PoetryProtocol, ProgressCallback, Sink
from .settings import ClientSettings, _check_seconds
from .sources import EndpointSource, HTTPSource, Source, parse_source
from .streaming import Delivery, Streamed, is_sink

if TYPE_CHECKING:
    # Imported when the first HTTP source is fetched: treq and twisted.web's
    # client are a start-up cost a client of tcp: and unix: sources need not pay.
    from .http import HTTPFetcher

#: Distinct source strings whose parse a client remembers.
_PARSED_CACHE_SIZE = 4096

_T = TypeVar("_T")


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


class Fetcher(Protocol):
    """
    How one kind of source is fetched: the one interface `PoetryClient`
    orchestrates (slots, retries, timeouts, decoding) around.
    """

    def fetch(
        self, source: Any, progress: ProgressCallback | None = None, sink: Sink | None = None
    ) -> Deferred[Body]:
        """
        One attempt at C{source}: fires with its body, or a `PoetryError`.

        Cancelling it fails it with kind ``cancelled``, leaving nothing in
        the reactor.  With a C{sink}, the bytes go there and the body is empty.
        """

    def close(self) -> Deferred[None]:
        """Let go of any connection kept for later attempts."""


class EndpointFetcher:
    """Fetches endpoint sources: `connect_poem` with a fresh `PoetryProtocol`."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings

    def fetch(
        self,
        source: EndpointSource,
        progress: ProgressCallback | None = None,
        sink: Sink | None = None,
    ) -> Deferred[Body]:
        """One connection to C{source.endpoint}; see L{Fetcher.fetch}."""
        settings = self._settings
        protocol = PoetryProtocol(
            source.name,
            settings.reactor,
            max_bytes=settings.max_bytes,
            idle_timeout=settings.idle_timeout,
            progress=progress,
            sink=sink,
        )
        return connect_poem(source.endpoint, protocol).addCallback(_no_charset)

    def close(self) -> Deferred[None]:
        """Nothing to close: every endpoint connection is its own."""
        return succeed(None)


_V = TypeVar("_V")


class _Setting(Generic[_V]):
    """
    A read-only attribute of a L{PoetryClient}: the setting of the same
    name in its C{settings}, so the client and its fetchers never disagree.
    """

    def __init__(self, doc: str | None = None) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        if self.__doc__ is None:
            self.__doc__ = f"The C{{{name}}} setting (read-only)."

    @overload
    def __get__(self, client: None, owner: type) -> _Setting[_V]: ...

    @overload
    def __get__(self, client: PoetryClient, owner: type | None = None) -> _V: ...

    def __get__(self, client: PoetryClient | None, owner: type | None = None) -> _V | _Setting[_V]:
        if client is None:
            return self  # on the class, for help() and documentation tools
        value: _V = getattr(client.settings, self._name)
        return value

    def __set__(self, client: PoetryClient, value: object) -> None:
        # A data descriptor: assigning raises, as it did for a property.
        raise AttributeError(f"{self._name} is read-only: the settings are fixed at construction")


class PoetryClient:
    """
    One object for many downloads that share the same settings.

    At most C{concurrency} downloads are connected (or waiting to retry) at
    once; further calls to L{get} wait for a free slot.  HTTP sources share
    one connection pool.  The settings are fixed at construction (see
    C{settings}, and the read-only attributes of the same names).

    It is an async context manager that closes it on the way out, under
    Twisted (C{Deferred.fromCoroutine}, C{ensureDeferred}) or asyncio (see
    `poetry_endpoints.aio`)::

        async with PoetryClient(reactor) as client:
            poem = await client.get("localhost:10000")

    Every step of a download is a `twisted.logger` event in the namespace
    C{poetry_endpoints.client} (see `poetry_endpoints.events`).

    @param reactor: a Twisted reactor (see L{PoetryReactor}); C{unix:}
        sources also need C{IReactorUNIX}.
    @param timeout: seconds allowed for each whole attempt, connecting
        included; C{None} for no limit.  A timed-out attempt is not retried.
    @param idle_timeout: seconds of silence allowed after connecting and
        between reads; C{None} for no limit.
    @param max_bytes: the largest poem accepted; a larger one is aborted as
        soon as it goes past the cap.  C{None} for no cap.
    @param encoding: codec for L{Poem.text}; C{None} means UTF-8, or the
        charset an HTTP server declares.  A codec that cannot decode a poem
        (not a text encoding, such as C{rot13}, or not linear in time) is
        refused here, with C{ValueError}.
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
        #: The settings, checked once, shared with each kind of source's fetcher.
        self.settings = ClientSettings.checked(
            reactor,
            timeout=timeout,
            idle_timeout=idle_timeout,
            max_bytes=max_bytes,
            encoding=encoding,
            errors=errors,
            concurrency=concurrency,
            retries=retries,
            backoff=backoff,
            cacert=cacert,
            user_agent=user_agent,
            allow_downgrade=allow_downgrade,
        )
        self._slots = DeferredSemaphore(concurrency)
        self._endpoints = EndpointFetcher(self.settings)
        self._http: HTTPFetcher | None = None  # its pool is made on the first HTTP source
        self._parsed: dict[str, Source] = {}

    # The settings, read-only: the fetchers read the same object.
    reactor: _Setting[IReactorTime] = _Setting(
        "The reactor, typed as the clock Twisted's timing APIs take."
    )
    endpoint_reactor: _Setting[Any] = _Setting(
        "What endpoints are built with: the reactor, sharing name lookups."
    )
    timeout: _Setting[float | None] = _Setting()
    idle_timeout: _Setting[float | None] = _Setting()
    max_bytes: _Setting[int | None] = _Setting()
    encoding: _Setting[str | None] = _Setting()
    errors: _Setting[str] = _Setting()
    concurrency: _Setting[int] = _Setting()
    retries: _Setting[int] = _Setting()
    backoff: _Setting[float] = _Setting()
    cacert: _Setting[str | None] = _Setting()
    user_agent: _Setting[str | None] = _Setting()
    allow_downgrade: _Setting[bool] = _Setting()

    def parse(self, source: SourceLike) -> Source:
        """Parse C{source} now; raises `PoetryError` ``invalid-source``."""
        if isinstance(source, EndpointSource | HTTPSource):
            return source
        if not isinstance(source, str):
            return parse_source(self.settings.reactor, source, cacert=self.settings.cacert)
        # Endpoints may be connected any number of times, so one parse per
        # distinct string serves every download of it (retries already reuse
        # theirs); parsing costs more than connecting on loopback.
        parsed = self._parsed.get(source)
        if parsed is None:
            settings = self.settings
            parsed = parse_source(settings.endpoint_reactor, source, cacert=settings.cacert)
            if len(self._parsed) >= _PARSED_CACHE_SIZE:
                self._parsed.clear()
            self._parsed[source] = parsed
        return parsed

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> Deferred[None]:
        """
        Close the idle connections this client keeps for HTTP sources.

        Fires when they are closed; the client stays usable.  Call it when
        done, so no idle connection outlives the client in the reactor.

        @param timeout: over TLS a close waits for the server to answer it,
            which a server need not do: after C{timeout} seconds the
            connections still closing are aborted, and the Deferred fires
            once they are gone.  C{None} waits as long as the servers take.
            Cancelling the Deferred aborts them at once (gone one turn of
            the reactor later) and fails it with C{CancelledError}.
        @raise TypeError: C{timeout} is not a number or C{None}.
        @raise ValueError: C{timeout} is not a positive finite number.
        """
        _check_seconds("timeout", timeout)
        if self._http is None:
            return succeed(None)
        return self._http.close(timeout)

    def __aenter__(self) -> _Awaitable[PoetryClient]:
        return _Awaitable(succeed(self))

    def __aexit__(self, *exc_info: object) -> _Awaitable[None]:
        return _Awaitable(self.close())

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
        ran = Deferred.fromCoroutine(self._run(parsed, progress, None))
        return ran.addCallback(self._decoded, parsed)

    def stream(
        self, source: SourceLike, sink: Sink, *, progress: ProgressCallback | None = None
    ) -> Deferred[Streamed]:
        """
        Download one poem into C{sink}, as it arrives, without keeping it.

        @param sink: a callable taking each piece of the poem (C{bytes}), in
            order; or an `IConsumer`, whose C{write} takes them and which has
            the connection registered as its push producer for each
            connection: pausing it stops reading from the network (and the
            idle timeout), so a slow consumer keeps the memory bounded.  A
            sink that raises fails the download with its own exception and
            aborts the connection, as a C{progress} callback that raises does.
        @param progress: as for L{get}.
        @return: fires once with a L{Streamed} summary on a clean close, or
            fails with a `PoetryError` of the same kinds as L{get} (not
            ``decode``: the bytes are not decoded).  Caps, timeouts,
            cancellation and retries are those of L{get}, except that an
            attempt after which the sink has received any byte is never
            retried: the sink cannot take the poem back.
        @raise TypeError: C{sink} is neither callable nor an `IConsumer`.
        """
        if not is_sink(sink):
            raise TypeError(f"sink must be a callable or an IConsumer, not {type(sink).__name__}")
        try:
            parsed = self.parse(source)
        except PoetryError as e:
            return fail(e)
        delivery = Delivery(sink)
        ran = Deferred.fromCoroutine(self._run(parsed, progress, delivery, delivery.started))

        def streamed(result: tuple[Body, float]) -> Streamed:
            return Streamed(parsed.name, delivery.delivered, result[1])

        return ran.addCallback(streamed)

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

    def _decoded(self, ran: tuple[Body, float], source: Source) -> Poem:
        (data, charset), elapsed = ran
        return self._poem(source, data, charset, elapsed)

    async def _run(
        self,
        source: Source,
        progress: ProgressCallback | None,
        sink: Sink | None,
        delivered: Callable[[], bool] = lambda: False,
    ) -> tuple[Body, float]:
        """
        Attempts at C{source} in a slot, with retries; the body and the
        seconds it took, from the first attempt (slot wait excluded).

        No retry follows an attempt after which C{delivered()} is true.
        """
        settings = self.settings
        try:
            await self._slots.acquire()
        except CancelledError:
            raise _cancelled(source, "while waiting for a free connection slot") from None
        try:
            started = settings.reactor.seconds()
            for attempt in count(1):
                log_attempt(source.name, attempt)
                try:
                    body = await self._attempt(source, progress, sink)
                    break
                except PoetryError as e:
                    log_failure(source.name, attempt, e.kind, e.reason)
                    if e.kind not in RETRYABLE or attempt > settings.retries or delivered():
                        raise
                    delay = settings.backoff * 2 ** (attempt - 1)
                    log_retry(source.name, attempt + 1, delay, e.kind, e.reason)
                try:
                    await deferLater(settings.reactor, delay)
                except CancelledError:
                    raise _cancelled(source, "while waiting to retry") from None
            return body, settings.reactor.seconds() - started
        finally:
            self._slots.release()

    def _attempt(
        self, source: Source, progress: ProgressCallback | None, sink: Sink | None
    ) -> Deferred[Body]:
        fetcher: Fetcher = self._endpoints
        if isinstance(source, HTTPSource):
            fetcher = self._http_fetcher()
        attempt = fetcher.fetch(source, progress, sink)
        timeout = self.settings.timeout
        if timeout is not None:
            attempt.addTimeout(timeout, self.settings.reactor, _timed_out(source, timeout))
        return attempt

    def _http_fetcher(self) -> HTTPFetcher:
        if self._http is None:
            from .http import HTTPFetcher

            self._http = HTTPFetcher(self.settings)
        return self._http

    def _poem(self, source: Source, data: bytes, charset: str | None, elapsed: float) -> Poem:
        encoding, _ = poem_decoding(source.name, self.settings.encoding, charset)
        try:
            text = data.decode(encoding, self.settings.errors)
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


class _Awaitable(Generic[_T]):
    """
    A Deferred that can be awaited under Twisted and under asyncio alike.

    Awaited in a coroutine that Twisted drives (C{Deferred.fromCoroutine},
    C{ensureDeferred}) it is the Deferred itself; awaited in an asyncio task
    (with Twisted's asyncio reactor, see `poetry_endpoints.aio`) it is the
    Deferred as an asyncio future, since asyncio tasks cannot wait on a
    Deferred.
    """

    def __init__(self, deferred: Deferred[_T]) -> None:
        self._deferred = deferred

    def __await__(self) -> Generator[Any, None, _T]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and asyncio.current_task(loop) is not None:
            return self._deferred.asFuture(loop).__await__()
        return self._deferred.__await__()


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
        # A one-off leaves no idle HTTP connection behind in the reactor,
        # waiting DEFAULT_CLOSE_TIMEOUT at most for a TLS server to answer.
        return client.close().addCallback(lambda _: result)

    return client.get(source).addBoth(closed)


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
