"""HTTP(S) sources: a GET with treq, the body streamed into a `PoetryProtocol`."""

from __future__ import annotations

from email.message import Message
from typing import TYPE_CHECKING, Any

from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure
from twisted.web._newclient import HEADER, STATUS, HTTP11ClientProtocol
from twisted.web.client import (
    Agent,
    BrowserLikeRedirectAgent,
    HTTPConnectionPool,
    ResponseDone,
    _HTTP11ClientFactory,
)
from twisted.web.error import InfiniteRedirection, RedirectWithNoLocation
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from .errors import PoetryError
from .protocol import PoetryProtocol, ProgressCallback
from .reasons import connect_error, describe, tls_reason
from .sources import HTTPSource
from .tls import VerifyingPolicy, trust_root

if TYPE_CHECKING:
    from .client import Body, PoetryClient

#: Redirects followed before giving up (curl's --max-redirs default is 50;
#: browsers stop near 20, as does Twisted's RedirectAgent).
MAX_REDIRECTS = 20
#: How much of a non-2xx response's body is read before the connection is cut.
ERROR_BODY_MAX_BYTES = 64 * 1024
#: The most a response's status line and headers may take.  Twisted's client
#: sets no limit, so a server sending headers forever would fill the memory.
MAX_HEAD_BYTES = 64 * 1024


class ResponseHeadTooLarge(Exception):
    """A response's status line and headers went past L{MAX_HEAD_BYTES}."""


class _BoundedHeadProtocol(HTTP11ClientProtocol):
    """An HTTP/1.1 client connection that gives up on a response head past L{MAX_HEAD_BYTES}."""

    def __init__(self, quiescentCallback: Any) -> None:
        HTTP11ClientProtocol.__init__(self, quiescentCallback)
        self._head_of: object = None  # the parser the count below belongs to
        self._head_bytes = 0

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


class _BoundedHeadFactory(_HTTP11ClientFactory):
    def buildProtocol(self, addr: object) -> HTTP11ClientProtocol:
        return _BoundedHeadProtocol(self._quiescentCallback)


class HTTPBodyProtocol(PoetryProtocol):
    """Receives a response body: whole on ``ResponseDone``, incomplete otherwise."""

    def is_clean_close(self, reason: Failure) -> bool:
        # PotentialDataLoss: a body delimited by the server closing the
        # connection, which for HTTP/1.0-style responses is the normal end.
        return reason.check(ResponseDone, PotentialDataLoss) is not None

    def abort_transport(self) -> None:
        # The body's transport is a proxy whose stopProducing only closes
        # gently; a cap or a cancellation must cut the TCP connection itself.
        connection = getattr(self.transport, "_producer", None)
        if connection is not None and hasattr(connection, "abortConnection"):
            connection.abortConnection()
        else:
            self.transport.stopProducing()  # type: ignore[union-attr]


class HTTPFetcher:
    """Fetches HTTP sources for one `PoetryClient`, over one connection pool."""

    def __init__(self, client: PoetryClient) -> None:
        self._client = client
        self.pool = HTTPConnectionPool(client.reactor, persistent=True)
        self.pool._factory = _BoundedHeadFactory
        agent = Agent(
            client.endpoint_reactor,
            contextFactory=VerifyingPolicy(trust_root(client.cacert)),
            pool=self.pool,
        )
        self._http = HTTPClient(BrowserLikeRedirectAgent(agent, redirectLimit=MAX_REDIRECTS))

    def fetch(self, source: HTTPSource, progress: ProgressCallback | None) -> Deferred[Body]:
        """GET C{source}; fires with the body and the declared charset."""
        client = self._client
        request: Deferred[Any]
        try:
            url = _URL.from_text(source.url)
            request = self._http.get(url, unbuffered=True, allow_redirects=False)
        except Exception as e:  # hyperlink and treq reject some URLs only here
            return fail(
                PoetryError(source.name, "invalid-source", f"cannot request this URL ({e})")
            )
        if client.idle_timeout is not None:
            request.addTimeout(client.idle_timeout, client.reactor, _no_headers(source))
        request.addErrback(_request_failed, source)

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
            )
            finished = body.finished
            assert finished is not None
            # A progress callback that can use the declared size (a determinate
            # bar) has an `expect` method; a plain callable is called as before.
            expect = getattr(progress, "expect", None)
            if ok and expect is not None and isinstance(response.length, int):
                expect(response.length)
            response.deliverBody(body)
            if ok:
                charset = _charset(response)
                return finished.addCallback(lambda data: (data, charset))
            status = f"HTTP {response.code} {response.phrase.decode('latin-1')}".rstrip()
            error = PoetryError(source.name, "http-status", status)
            return finished.addBoth(lambda _: Failure(error))

        return request.addCallback(got_response)

    def close(self) -> Deferred[None]:
        """Close the pool's idle persistent connections."""
        return self.pool.closeCachedConnections()  # type: ignore[no-any-return]


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
        if cause.check(ConnectError):
            return Failure(connect_error(source.name, cause))
    inner = "; ".join(describe(c) for c in causes[1:]) or describe(failure)
    return Failure(
        PoetryError(source.name, "incomplete", f"connection lost before the response ({inner})")
    )
