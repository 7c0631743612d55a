"""
The private APIs of Twisted and the standard library the package relies on
still behave as relied on: one test per use, plus the import-time check
that refuses to load when one is gone.

Each test checks the behaviour, not only the name, so that an upgrade that
keeps a name but changes what it does (a pool that no longer builds its
connections with its factory, say) fails here rather than silently
disabling a safeguard.
"""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from certs import make_ca
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web._newclient import Request, ResponseFailed
from twisted.web.client import HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from conftest import subprocess_env
from poetry_endpoints import PoetryClient, reasons
from poetry_endpoints._private_apis import (
    IOpenSSLTrustRoot,
    MissingPrivateAPI,
    body_connection,
    cached_connections,
    is_text_encoding,
    parse_description,
    parse_trust_root_path,
    private_cert_from_paths,
)
from poetry_endpoints.cli import build_parser
from poetry_endpoints.decoding import UnusableCodec, poem_codec
from poetry_endpoints.http import MAX_HEAD_BYTES, HTTPFetcher, ResponseHeadTooLarge, _abort
from poetry_endpoints.sources import describe_endpoint
from poetry_endpoints.tls import trust_root


class _MemoryEndpoint:
    """Connects a factory's protocol to a L{StringTransport}, as a pool would to a socket."""

    def __init__(self) -> None:
        self.transport = StringTransport()

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(self.transport)
        return succeed(protocol)


def _pool() -> HTTPConnectionPool:
    """The connection pool of a real L{HTTPFetcher}."""
    return HTTPFetcher(PoetryClient(MemoryReactorClock())).pool


def _request(pool: HTTPConnectionPool) -> tuple[Any, StringTransport, Deferred[IResponse]]:
    """A GET on a connection the pool made through an in-memory endpoint."""
    endpoint = _MemoryEndpoint()
    connected = pool.getConnection(("memory",), endpoint)
    connections: list[Any] = []
    connected.addCallback(connections.append)
    (connection,) = connections
    request = Request(b"GET", b"/", Headers({b"Host": [b"poetry.test"]}), None, persistent=True)
    return connection, endpoint.transport, connection.request(request)


def _kept_alive(pool: HTTPConnectionPool) -> tuple[Any, StringTransport]:
    """A connection of C{pool} whose response was read whole: back in the pool, idle."""
    connection, transport, response = _request(pool)
    seen = _outcome(response)
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    seen[0].deliverBody(_Body())  # type: ignore[attr-defined]
    connection.dataReceived(b"poem")
    return connection, transport


def _outcome(deferred: Deferred[Any]) -> list[object]:
    seen: list[object] = []
    deferred.addBoth(seen.append)
    return seen


class _Body(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


def _headers(total: int) -> bytes:
    line = b"X-Filler: " + b"a" * 990 + b"\r\n"
    return b"HTTP/1.1 200 OK\r\n" + line * (total // len(line))


# twisted.web._newclient.HTTP11ClientProtocol, HTTPConnectionPool._factory,
# _HTTP11ClientFactory and HTTP11ClientProtocol._giveUp/_parser (the head cap)


def test_the_pool_builds_connections_that_cap_a_response_head() -> None:
    connection, transport, response = _request(_pool())
    seen = _outcome(response)
    connection.dataReceived(_headers(MAX_HEAD_BYTES + 4096))
    (failure,) = seen
    assert isinstance(failure, Failure) and failure.check(ResponseFailed)
    assert any(inner.check(ResponseHeadTooLarge) for inner in failure.value.reasons)
    assert transport.disconnecting


def test_a_head_under_the_cap_is_read() -> None:
    connection, transport, response = _request(_pool())
    seen = _outcome(response)
    connection.dataReceived(_headers(MAX_HEAD_BYTES - 4096) + b"Content-Length: 0\r\n\r\n")
    (result,) = seen
    assert not isinstance(result, Failure)
    assert result.code == 200  # type: ignore[attr-defined]
    assert not transport.disconnecting


# HTTP11ClientProtocol._disconnectParser, the parser's bodyDecoder,
# twisted.web.http._IdentityTransferDecoder and _DataLoss (a cut body)


def _close_delimited_body(reason: Failure) -> Failure:
    connection, _, response = _request(_pool())
    seen = _outcome(response)
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhalf a po")
    (result,) = seen
    body = _Body()
    result.deliverBody(body)  # type: ignore[attr-defined]
    connection.connectionLost(reason)
    assert body.data == b"half a po"
    assert body.reason is not None
    return body.reason


def test_a_body_without_a_length_ended_by_a_reset_is_cut_short() -> None:
    reason = _close_delimited_body(Failure(ConnectionLost("reset")))
    assert reason.check(ResponseFailed) and not reason.check(PotentialDataLoss)
    inner = reason.value.reasons
    # reasons.py names twisted.web's marker for a cut body rather than import it.
    assert any(cause.check(*reasons._BODY_CUT_MARKERS) for cause in inner)
    assert any(cause.check(ConnectionLost) for cause in inner)
    assert [cause.type for cause in reasons.causes(reason)] == [ConnectionLost]


def test_a_body_without_a_length_ended_by_a_clean_close_is_whole() -> None:
    reason = _close_delimited_body(Failure(ConnectionDone()))
    assert reason.check(PotentialDataLoss, ResponseDone)


# twisted.web._newclient.TransportProxyProducer._producer (aborting a body)


def test_a_body_transport_leads_to_a_connection_that_can_be_aborted() -> None:
    connection, transport, response = _request(_pool())
    seen = _outcome(response)
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
    body = _Body()
    seen[0].deliverBody(body)  # type: ignore[attr-defined]
    assert body_connection(body.transport) is transport
    _abort(body.transport)
    assert transport.disconnected  # aborted: StringTransport's mark of abortConnection


# twisted.web.client.HTTPConnectionPool._connections (aborting a close left unanswered)


def test_a_close_that_is_not_answered_can_be_aborted() -> None:
    fetcher = HTTPFetcher(PoetryClient(MemoryReactorClock()))
    connection, transport = _kept_alive(fetcher.pool)
    assert cached_connections(fetcher.pool) == [connection]
    closing = fetcher.close()
    assert transport.disconnecting and not transport.disconnected  # closing, not answered
    closed = _outcome(closing)
    assert closed == []
    closing.cancel()
    assert transport.disconnected  # aborted: StringTransport's mark of abortConnection
    (failure,) = closed
    assert isinstance(failure, Failure) and failure.check(CancelledError)
    connection.connectionLost(Failure(ConnectionLost("aborted")))  # what the abort leads to
    assert cached_connections(fetcher.pool) == []


def test_a_close_that_is_not_answered_in_time_is_aborted_and_ends_when_it_is_gone() -> None:
    clock = MemoryReactorClock()
    fetcher = HTTPFetcher(PoetryClient(clock))
    connection, transport = _kept_alive(fetcher.pool)
    closed = _outcome(fetcher.close(timeout=0.5))
    clock.advance(0.4)
    assert transport.disconnecting and not transport.disconnected  # still waiting for the server
    clock.advance(0.1)
    assert transport.disconnected  # aborted: StringTransport's mark of abortConnection
    assert closed == []  # not before the connection is gone
    connection.connectionLost(Failure(ConnectionLost("aborted")))  # what the abort leads to
    assert closed == [None]
    assert cached_connections(fetcher.pool) == [] and clock.getDelayedCalls() == []


def test_a_close_answered_in_time_leaves_no_timer() -> None:
    clock = MemoryReactorClock()
    fetcher = HTTPFetcher(PoetryClient(clock))
    connection, transport = _kept_alive(fetcher.pool)
    closed = _outcome(fetcher.close(timeout=0.5))
    connection.connectionLost(Failure(ConnectionDone()))  # the server answered the close
    assert closed == [None] and not transport.disconnected
    assert clock.getDelayedCalls() == []


# twisted.internet.endpoints._parse


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:127.0.0.1:10000", (["tcp", "127.0.0.1", "10000"], {})),
        ("tcp:host=localhost:port=80", (["tcp"], {"host": "localhost", "port": "80"})),
        (r"unix:/tmp/a\:b", (["unix", "/tmp/a:b"], {})),
        (
            r"tls:localhost:443:trustRoots=/x\=y",
            (["tls", "localhost", "443"], {"trustRoots": "/x=y"}),
        ),
    ],
)
def test_descriptions_are_split_as_twisted_splits_them(
    description: str, expected: tuple[list[str], dict[str, str]]
) -> None:
    assert parse_description(description) == expected


# twisted.internet.endpoints._parseTrustRootPath and _privateCertFromPaths,
# twisted.internet._sslverify.IOpenSSLTrustRoot (tls: descriptions, --cacert)


def test_a_trust_directory_and_a_client_certificate_load(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    issued = ca.issue("client")
    roots = parse_trust_root_path(str(tmp_path))
    assert IOpenSSLTrustRoot.providedBy(roots)
    optionsForClientTLS("localhost", trustRoot=roots)
    certificate = private_cert_from_paths(str(issued.cert), str(issued.key))
    assert isinstance(certificate, PrivateCertificate)
    assert private_cert_from_paths(None, None) is None


def test_our_trust_root_is_one_twisted_accepts(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    for root in (trust_root(None), trust_root(str(ca.cert))):
        assert IOpenSSLTrustRoot.providedBy(root)
        optionsForClientTLS("localhost", trustRoot=root)


# The endpoints' _hostText/_host, _port and _path (naming an endpoint object)


def test_endpoint_objects_are_named_by_their_address() -> None:
    reactor = MemoryReactorClock()
    assert describe_endpoint(HostnameEndpoint(reactor, b"localhost", 80)) == (
        "HostnameEndpoint(localhost:80)"
    )
    assert describe_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", 81)) == (
        "TCP4ClientEndpoint(127.0.0.1:81)"
    )
    assert describe_endpoint(TCP6ClientEndpoint(reactor, "::1", 82)) == "TCP6ClientEndpoint(::1:82)"
    assert describe_endpoint(UNIXClientEndpoint(reactor, "/tmp/poems.sock")) == (
        "UNIXClientEndpoint(/tmp/poems.sock)"
    )


# argparse.ArgumentParser._get_values (overridden)


def test_an_option_given_a_double_dash_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["get", "--max-bytes=--", "tcp:127.0.0.1:10000"])
    assert exited.value.code == 2
    assert "--max-bytes: expected one argument" in capsys.readouterr().err


# codecs.CodecInfo._is_text_encoding


def test_only_text_encodings_may_decode_a_poem() -> None:
    assert is_text_encoding(codecs.lookup("latin-1"))
    assert poem_codec("latin-1").name == "iso8859-1"
    for name in ("base64", "zlib", "rot13", "hex"):
        assert not is_text_encoding(codecs.lookup(name))
        with pytest.raises(UnusableCodec):
            poem_codec(name)


# The import-time check


REMOVE_AND_IMPORT = """
import importlib, sys
owner = importlib.import_module(sys.argv[1])
*path, last = sys.argv[2].split(".")
for name in path:
    owner = getattr(owner, name)
delattr(owner, last)
import poetry_endpoints
"""


@pytest.mark.parametrize(
    ("module", "attribute"),
    [
        ("twisted.web.client", "HTTPConnectionPool._factory"),
        ("twisted.web._newclient", "HTTP11ClientProtocol._giveUp"),
        ("twisted.internet.endpoints", "_parse"),
    ],
)
def test_a_missing_private_api_fails_the_import_naming_it_and_the_versions(
    module: str, attribute: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", REMOVE_AND_IMPORT, module, attribute],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"poetry_endpoints._private_apis.{MissingPrivateAPI.__name__}: ")
    assert f"{module}.{attribute} (" in last
    import twisted

    assert f"Twisted {twisted.__version__}," in last


def test_the_check_passes_here() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import poetry_endpoints._private_apis"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert (done.returncode, done.stderr) == (0, "")
