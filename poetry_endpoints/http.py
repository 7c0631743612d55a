"""HTTP(S) sources: a GET with treq, the body streamed into a `PoetryProtocol`."""

from __future__ import annotations

import re
import zlib
from email.message import Message
from typing import Any

from hyperlink import EncodedURL
from treq.client import HTTPClient

try:
    from treq.cookies import IndexableCookieJar
except ImportError:  # treq before 26.7 types (and takes) the standard library's jar
    from http.cookiejar import CookieJar as IndexableCookieJar  # type: ignore[assignment]
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikeRedirectAgent,
    GzipDecoder,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.error import InfiniteRedirection, RedirectWithNoLocation, SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from ._private_apis import (
    HEADER,
    STATUS,
    DataLoss,
    HTTP11ClientFactory,
    HTTP11ClientProtocol,
    IdentityTransferDecoder,
    body_connection,
    cached_connections,
    use_connection_factory,
)
from .errors import PoetryError
from .events import log_redirect
from .protocol import Body, PoetryProtocol, ProgressCallback, Sink, close_at_end_of_input
from .reasons import connect_error, describe, tls_reason
from .settings import ClientSettings
from .sources import HTTPSource
from .tls import TLSOver, VerifyingPolicy, trust_root

#: Redirects followed before giving up (curl's --max-redirs default is 50;
#: browsers stop near 20, as does Twisted's RedirectAgent).
MAX_REDIRECTS = 20
#: How much of a non-2xx response's body is read before the connection is cut.
ERROR_BODY_MAX_BYTES = 64 * 1024
#: The most a response's status line and headers may take.  Twisted's client
#: sets no limit, so a server sending headers forever would fill the memory.
MAX_HEAD_BYTES = 64 * 1024
#: The most a gzip body is inflated in one step, so that a body's cap is
#: checked before a small read of a compression bomb becomes a huge string.
INFLATE_STEP = 256 * 1024


class ResponseHeadTooLarge(Exception):
    """A response's status line and headers went past L{MAX_HEAD_BYTES}."""


@implementer(IHalfCloseableProtocol)
class _BoundedHeadProtocol(HTTP11ClientProtocol):
    """
    An HTTP/1.1 client connection that gives up on a response head past
    L{MAX_HEAD_BYTES}, and that tells a reset from a clean close even when
    the reactor reports the reset as a clean close (see L{readConnectionLost}).
    """

    def __init__(self, quiescentCallback: Any) -> None:
        HTTP11ClientProtocol.__init__(self, quiescentCallback)
        self._head_of: object = None  # the parser the count below belongs to
        self._head_bytes = 0
        #: How the input ended, once the reactor has said it did.
        self._input_end: Failure | None = None

    def readConnectionLost(self) -> None:
        """
        The reactor saw the end of the input: a clean close, unless the
        socket holds a pending error.

        As for `PoetryProtocol.readConnectionLost`: Twisted's poll and epoll
        reactors can take a reset for a clean close (a "hang up" event
        without "readable"), and a body with no length would then pass for
        whole.  Without this method the TCP transport calls L{connectionLost}
        with C{ConnectionDone} and has closed the socket before, so its
        pending error can no longer be read; here it still can.

        Only a plain TCP transport calls this.  Under TLS, Twisted's TLS
        layer is the TCP transport's protocol and does not pass the
        half-close on: it reports any end of the TCP connection as the end
        of the body only after the server's C{close_notify}, which a reset
        never brings.
        """
        self._input_end = close_at_end_of_input(self.transport)

    def writeConnectionLost(self) -> None:
        """Nothing to do: the connection never closes only its own side."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._input_end is not None:
            # How the input ended decides, not how closing our side after it
            # went (aborting after a reset ends as ConnectionAborted).
            reason = self._input_end
        HTTP11ClientProtocol.connectionLost(self, reason)

    def dataReceived(self, bytes: bytes) -> None:
        HTTP11ClientProtocol.dataReceived(self, bytes)
        parser = self._parser
        if parser is None or parser.state not in (STATUS, HEADER):
            return
        if parser is not self._head_of:  # a new request on a reused connection
            self._head_of, self._head_bytes = parser, 0
        self._head_bytes += len(bytes)
        if self._head_bytes > MAX_HEAD_BYTES:
            HTTP11ClientProtocol._giveUp(self, Failure(ResponseHeadTooLarge()))

    def _disconnectParser(self, reason: Failure) -> None:
        # A body with neither a length nor chunking ends when the connection
        # does, and twisted.web reports every such end as PotentialDataLoss,
        # whatever ended the connection: a reset, an abort, or a TLS
        # connection closed without close_notify (a truncation attack) would
        # all pass for the end of the body.  Only here is the connection's
        # own reason known: anything but a clean close (FIN, after
        # close_notify under TLS) makes the body end as cut short, which
        # twisted.web reports as ResponseFailed carrying this reason.
        parser = self._parser
        decoder = getattr(parser, "bodyDecoder", None)
        if (
            isinstance(decoder, IdentityTransferDecoder)
            and decoder.contentLength is None
            and not reason.check(ConnectionDone)
        ):
            parser.bodyDecoder = _CutShort()  # type: ignore[union-attr]
        HTTP11ClientProtocol._disconnectParser(self, reason)


class _CutShort:
    """A body decoder whose body ended before it was whole."""

    def dataReceived(self, data: bytes) -> None:
        raise RuntimeError("no data after the connection is lost")

    def noMoreData(self) -> None:
        raise DataLoss()


class _BoundedHeadFactory(HTTP11ClientFactory):
    def buildProtocol(self, addr: object) -> HTTP11ClientProtocol:
        return _BoundedHeadProtocol(self._quiescentCallback)


class HTTPBodyProtocol(PoetryProtocol):
    """Receives a response body: whole on ``ResponseDone``, incomplete otherwise."""

    def is_clean_close(self, reason: Failure) -> bool:
        # PotentialDataLoss: a body delimited by the server closing the
        # connection, which for HTTP/1.0-style responses is the normal end.
        # Our connection protocol turns every other end of such a body into
        # a failure first (see _BoundedHeadProtocol._disconnectParser), so
        # here it can only stand for a clean close.
        return reason.check(ResponseDone, PotentialDataLoss) is not None

    def abort_transport(self) -> None:
        _abort(self.transport)

    def fail(self, error: PoetryError) -> None:
        """Fail C{finished} with C{error}, the connection being already gone."""
        self._finish(Failure(error))

    def abort_with(self, failure: Failure) -> None:
        """Fail C{finished} with C{failure} (any exception) and abort the connection."""
        self._abort(failure)


def _abort(transport: object) -> None:
    # A body's transport is a proxy whose stopProducing only closes gently;
    # a cap or a cancellation must cut the TCP connection itself.
    connection = body_connection(transport)
    if connection is not None and hasattr(connection, "abortConnection"):
        connection.abortConnection()
    elif transport is not None:
        transport.stopProducing()  # type: ignore[attr-defined]


class _GunzipProtocol(Protocol):
    """
    Inflates a ``Content-Encoding: gzip`` body into an `HTTPBodyProtocol`.

    Unlike twisted.web's own decoder it tells a body that is not gzip
    (``decode``, the connection aborted) and a gzip stream that stops before
    its end (``incomplete``, even when the HTTP body itself was whole) from
    a poem, and it inflates at most L{INFLATE_STEP} bytes at a time, so the
    body's cap sees a compression bomb before it fills the memory.
    """

    def __init__(self, inner: Protocol, body: HTTPBodyProtocol) -> None:
        self._inner = inner  # the body, or the next gzip layer inwards
        self._body = body
        self._inflater = _inflater()
        self._compressed = 0
        #: Whether what was received so far ends at the end of a gzip member.
        self._whole = True

    def connectionMade(self) -> None:
        self._inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._compressed += len(data)
        body = self._body
        while data and body.finished is not None:
            self._whole = False
            try:
                inflated = self._inflater.decompress(data, INFLATE_STEP)
            except zlib.error as e:
                body.abort(
                    PoetryError(
                        body.source,
                        "decode",
                        f"the server said gzip but the body is not valid gzip ({e}) "
                        f"after {self._compressed} bytes; connection aborted",
                    )
                )
                return
            if inflated:
                self._inner.dataReceived(inflated)
            if self._inflater.eof:
                # Several members one after another are one gzip stream.
                data = self._inflater.unused_data
                self._inflater = _inflater()
                self._whole = True
            else:
                data = self._inflater.unconsumed_tail

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        body = self._body
        if body.finished is not None and body.is_clean_close(reason) and not self._whole:
            body.fail(
                PoetryError(
                    body.source,
                    "incomplete",
                    f"the gzip stream stops short after {self._compressed} bytes "
                    f"({body.received} inflated); poem incomplete",
                )
            )
        self._inner.connectionLost(reason)


def _inflater() -> Any:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only, as declared


def default_user_agent() -> str:
    """``poetry-endpoints/VERSION``, what HTTP requests say they come from by default."""
    # The version the package read once at import (this module is imported
    # while the package is, so not at the top).
    from . import __version__

    return f"poetry-endpoints/{__version__}"


class HTTPFetcher:
    """
    Fetches HTTP sources with one client's settings, over one connection pool.

    The settings used: C{reactor}, C{endpoint_reactor}, C{cacert},
    C{max_bytes}, C{idle_timeout}, C{allow_downgrade} (follow a redirect from
    an C{https} source to plain C{http}; refused by default, as the caller
    asked for TLS) and C{user_agent} (L{default_user_agent} if None).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self.pool = HTTPConnectionPool(settings.reactor, persistent=True)
        use_connection_factory(self.pool, _BoundedHeadFactory)
        self._agent = Agent.usingEndpointFactory(
            settings.endpoint_reactor,
            _Endpoints(settings, VerifyingPolicy(trust_root(settings.cacert))),
            pool=self.pool,
        )
        self._cookies = IndexableCookieJar()
        self._user_agent = (settings.user_agent or default_user_agent()).encode("ascii")

    def fetch(
        self,
        source: HTTPSource,
        progress: ProgressCallback | None = None,
        sink: Sink | None = None,
    ) -> Deferred[Body]:
        """
        GET C{source}; fires with the body and the declared charset.

        With a C{sink}, a 2xx body goes to it as it arrives (see
        `PoetryProtocol`) and the body fired with is empty.  A sink with a
        C{charset_declared} method is first called with the response's
        declared charset (C{None} if none), before the body's first byte.
        """
        client = self._settings
        request: Deferred[Any]
        # One redirect policy per attempt: it follows that attempt's hops.
        hops = _RedirectPolicy(client, self._agent, source)
        http = HTTPClient(
            BrowserLikeRedirectAgent(hops, redirectLimit=MAX_REDIRECTS), cookiejar=self._cookies
        )
        try:
            url = _URL.from_text(source.url)
            headers = Headers({b"User-Agent": [self._user_agent]})  # fresh: agents may add to it
            request = http.get(url, headers=headers, unbuffered=True, allow_redirects=False)
        except Exception as e:  # hyperlink and treq reject some URLs only here
            return fail(
                PoetryError(source.name, "invalid-source", f"cannot request this URL ({e})")
            )
        if client.idle_timeout is not None:
            request.addTimeout(client.idle_timeout, client.reactor, _no_headers(source))
        cancelled = False

        def cancel(_: Deferred[Body]) -> None:
            # While a name resolves, cancelling shows up as a DNSLookupError,
            # not a CancelledError: only this flag tells it from a real
            # failure (which, as connect-failed, would be retried).
            nonlocal cancelled
            cancelled = True
            request.cancel()

        def failed(failure: Failure) -> Failure:
            if cancelled and not failure.check(PoetryError):
                return Failure(
                    PoetryError(source.name, "cancelled", "cancelled before the response")
                )
            return _request_failed(failure, source)

        request.addErrback(failed)

        def got_response(response: IResponse) -> Deferred[Body]:
            ok = 200 <= response.code < 300
            body = HTTPBodyProtocol(
                source.name,
                client.reactor,
                # An error page is read (so the connection can be reused) but
                # never kept, and never allowed to grow without bound.
                max_bytes=client.max_bytes if ok else ERROR_BODY_MAX_BYTES,
                idle_timeout=client.idle_timeout,
                progress=progress if ok else None,
                sink=sink if ok else None,
            )
            finished = body.finished
            assert finished is not None
            # A progress callback that can use the declared size (a determinate
            # bar) has an `expect` method; a plain callable is called as before.
            expect = getattr(progress, "expect", None)
            if ok and expect is not None and isinstance(response.length, int):
                expect(response.length)
            charset = _charset(response) if ok else None
            declared = getattr(sink, "charset_declared", None)
            refused: Failure | None = None
            if ok and declared is not None:
                # Before the first byte: a sink that checks the poem decodes
                # as it streams (a file) must know the codec from the start.
                try:
                    declared(charset)
                except Exception:
                    refused = Failure()
            _deliver(response, body)
            if refused is not None:
                # As for a sink whose write raises: its own exception, and
                # the connection cut rather than left half-read.
                body.abort_with(refused)
            if ok:
                return finished.addCallback(lambda data: (data, charset))
            status = f"HTTP {response.code} {response.phrase.decode('latin-1')}".rstrip()
            error = PoetryError(source.name, "http-status", status)
            return finished.addBoth(lambda _: Failure(error))

        attempt: Deferred[Body] = Deferred(cancel)
        request.addCallback(got_response).chainDeferred(attempt)
        return attempt

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """
        Close the pool's idle persistent connections; fires once they are closed.

        Over TLS a close waits for the server to answer it, which a server
        need not do.  After C{timeout} seconds (C{None}: no limit) the
        connections still closing are aborted, and it fires once they are
        gone.  Cancelling the Deferred aborts them at once (each is gone one
        turn of the reactor later, as an aborted connection is) and fails it
        with C{CancelledError}.
        """
        idle = cached_connections(self.pool)
        closing: Deferred[None] = self.pool.closeCachedConnections()

        def abort() -> None:
            for protocol in idle:
                transport = protocol.transport
                if protocol.state != "CONNECTION_LOST" and transport is not None:
                    transport.abortConnection()

        closed: Deferred[None] = Deferred(lambda _: abort())
        timer: IDelayedCall | None = None
        if timeout is not None and not closing.called:
            timer = self._settings.reactor.callLater(timeout, abort)

        def done(result: Failure | None) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if closed.called:  # cancelled: it has failed already
                return
            if isinstance(result, Failure):
                closed.errback(result)
            else:
                closed.callback(None)

        closing.addBoth(done)
        return closed


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    What the C{Agent} connects with: what Twisted's own C{Agent} would (a
    C{HostnameEndpoint}, under TLS for C{https}), with TLS timed by the
    client's reactor (see `TLSOver`).
    """

    def __init__(self, settings: ClientSettings, policy: VerifyingPolicy) -> None:
        self._settings = settings
        self._policy = policy

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(
                f"The host of the provided URI ({uri.host!r}) contains non-ASCII octets, "
                "it should be ASCII decodable."
            ) from None
        endpoint = HostnameEndpoint(self._settings.endpoint_reactor, host, uri.port)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(uri.host, uri.port)
            return TLSOver(creator, endpoint, self._settings.reactor)
        raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")


def _deliver(response: IResponse, body: HTTPBodyProtocol) -> None:
    """Deliver C{response}'s body to C{body}, inflating gzip with L{_GunzipProtocol}."""
    # treq always puts twisted.web's ContentDecoderAgent in front, which wraps
    # a gzip response in one GzipDecoder per gzip in Content-Encoding.  Its
    # decoder takes a truncated stream for a whole one and reports a body
    # that is not gzip as an empty poem: deliver the raw body to ours instead.
    raw = getattr(response, "original", response)  # treq's _Response
    protocol: Protocol = body
    while isinstance(raw, GzipDecoder):
        raw = raw.original
        protocol = _GunzipProtocol(protocol, body)
    raw.deliverBody(protocol)


@implementer(IAgent)
class _RedirectPolicy:
    """
    The agent each hop of one fetch goes through: it refuses the hops a
    redirect may not take, before anything connects.

    A redirect may lead only to another C{http(s)} URL (never to C{file:} or
    an endpoint), whose text is printable ASCII, and, from an C{https}
    source, only to C{https} unless downgrades are allowed.  A refused
    redirect is kind ``http-status`` naming the status: it is what the
    server answered, and a retry would get the same answer.
    """

    def __init__(self, settings: ClientSettings, agent: IAgent, source: HTTPSource) -> None:
        self._client = settings
        self._agent = agent
        self._source = source
        self._secure = False  # whether the source is https
        self._last: IResponse | None = None  # the redirect this hop follows
        self._uri = b""  # the URL of the last hop

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        previous = self._last
        if previous is None:
            self._secure = uri[:6].lower() == b"https:"
        else:
            refused = self._refusal(previous, uri)
            if refused is not None:
                return self._refuse(previous, refused)
            log_redirect(self._source.name, _shown(self._uri), _shown(uri), previous.code)
        self._uri = uri
        return self._agent.request(method, uri, headers, bodyProducer).addCallback(self._seen)

    def _refuse(self, redirect: IResponse, reason: str) -> Deferred[IResponse]:
        # The redirect's body is read, and dropped, as an error page's is: the
        # connection goes back to the pool whole, or is cut past the limit.
        client = self._client
        body = HTTPBodyProtocol(
            self._source.name,
            client.reactor,
            max_bytes=ERROR_BODY_MAX_BYTES,
            idle_timeout=client.idle_timeout,
        )
        finished = body.finished
        assert finished is not None
        redirect.deliverBody(body)
        error = PoetryError(self._source.name, "http-status", reason)

        def refused(result: object) -> Failure:
            if isinstance(result, Failure) and result.check(PoetryError):
                if result.value.kind == "cancelled":  # type: ignore[union-attr]
                    return result
            return Failure(error)

        return finished.addBoth(refused)

    def _seen(self, response: IResponse) -> IResponse:
        self._last = response
        return response

    def _refusal(self, redirect: IResponse, uri: bytes) -> str | None:
        # The Location as sent, too: twisted.web resolves some (unix:...) to
        # an empty URL (to "#" before Twisted 25).
        location = (redirect.headers.getRawHeaders(b"location") or [b""])[0]
        uri = uri.strip(b"#")
        shown = _shown(uri or location)
        code = redirect.code
        if not _PRINTABLE_ASCII.match(location) or not _PRINTABLE_ASCII.match(uri or location):
            return f"HTTP {code} redirect to a URL with control, space or non-ASCII bytes: {shown}"
        scheme = (uri or location).partition(b":")[0].lower()
        if scheme not in (b"http", b"https"):
            return f"HTTP {code} redirect to a URL that is not http(s): {shown}"
        if self._secure and scheme == b"http" and not self._client.allow_downgrade:
            return f"HTTP {code} redirect from https to plain http refused: {shown}"
        return None


_PRINTABLE_ASCII = re.compile(rb"\A[\x21-\x7e]+\Z")
#: How much of a refused URL a message shows.
_SHOWN_MAX = 200


def _shown(uri: bytes) -> str:
    """C{uri} for a one-line message: every byte that is not printable ASCII escaped."""
    text = "".join(
        chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x5C else f"\\x{byte:02x}"
        for byte in uri[:_SHOWN_MAX]
    )
    return text + ("..." if len(uri) > _SHOWN_MAX else "")


class _URL(EncodedURL):
    """
    A URL whose C{to_uri} leaves an IPv6 literal host alone.

    hyperlink IDNA-encodes every host, and idna rejects the colons of
    C{[::1]} (python-hyper/hyperlink#68, #188); treq calls C{to_uri} on
    every URL it is given.
    """

    def to_uri(self) -> EncodedURL:
        if ":" in self.host:
            placeholder = super().replace(host="ipv6-literal.invalid")
            return placeholder.to_uri().replace(host=self.host)
        return super().to_uri()


def _charset(response: IResponse) -> str | None:
    values = response.headers.getRawHeaders(b"content-type")
    if not values:
        return None
    message = Message()
    message["content-type"] = values[-1].decode("latin-1")
    charset = message.get_content_charset()
    return charset or None


def _no_headers(source: HTTPSource) -> Any:
    def convert(result: object, timeout: float) -> Failure:
        return Failure(
            PoetryError(source.name, "timeout", f"no response within {timeout:g} s (idle timeout)")
        )

    return convert


def _request_failed(failure: Failure, source: HTTPSource) -> Failure:
    if failure.check(PoetryError):
        return failure
    # The agent reports most failures wrapped, in ResponseNeverReceived or
    # ResponseFailed: the cause is among their reasons.
    causes = [failure, *getattr(failure.value, "reasons", [])]
    for cause in causes:
        if cause.check(CancelledError):
            return Failure(PoetryError(source.name, "cancelled", "cancelled before the response"))
    for cause in causes:
        if cause.check(ResponseHeadTooLarge):
            return Failure(
                PoetryError(
                    source.name,
                    "too-large",
                    f"response headers exceed {MAX_HEAD_BYTES} bytes; connection closed",
                )
            )
        if cause.check(InfiniteRedirection):
            return Failure(
                PoetryError(source.name, "http-status", f"more than {MAX_REDIRECTS} redirects")
            )
        if cause.check(RedirectWithNoLocation):
            status = getattr(cause.value, "status", b"3xx").decode("latin-1")
            return Failure(
                PoetryError(source.name, "http-status", f"HTTP {status} redirect without Location")
            )
    for cause in causes:
        reason = tls_reason(cause)
        if reason is not None:
            return Failure(PoetryError(source.name, "tls", reason))
    for cause in causes:
        # A name that does not resolve never produced a connection either.
        if cause.check(ConnectError, DNSLookupError):
            return Failure(connect_error(source.name, cause))
    inner = "; ".join(describe(c) for c in causes[1:]) or describe(failure)
    return Failure(
        PoetryError(source.name, "incomplete", f"connection lost before the response ({inner})")
    )
