"""
HTTP(S) servers that lie about where a body ends, what it is, or where to go next.

The hostile servers are raw sockets in a thread (wrapped with Python's
``ssl`` module for HTTPS), written without project code, so they can do what
no well-behaved server does: reset the connection mid-body, close a TLS
connection without ``close_notify``, send half a gzip stream, redirect to
``file:``.  The client runs in the trial reactor, or as the CLI (in this
process, on a reactor of its own: tests/inprocess.py).
"""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import zlib
from importlib.metadata import version
from pathlib import Path

from certs import make_ca
from inprocess import Ran, run_cli
from raw_http import Answer, RawHTTPServer
from twisted.web.resource import Resource
from web_helpers import Page, Redirect, WebTest, inline, reactor

from poetry_endpoints import PoetryClient, PoetryError, get_poetry
from poetry_endpoints.defaults import DEFAULT_CLOSE_TIMEOUT
from poetry_endpoints.http import INFLATE_STEP

WAIT = 15.0
POEM = b"".join(b"line %04d of a poem that a hostile server cuts short\n" % n for n in range(19))
UTF8 = b"text/plain; charset=utf-8"


def finish_cleanly(connection: socket.socket) -> None:
    """FIN; under TLS, close_notify first."""
    if isinstance(connection, ssl.SSLSocket):
        connection.unwrap()
    connection.shutdown(socket.SHUT_WR)


def reset(connection: socket.socket) -> None:
    """RST, once the client has had time to read what was sent."""
    time.sleep(0.3)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def truncate(connection: socket.socket) -> None:
    """Under TLS: a TCP FIN with no close_notify before it."""
    assert isinstance(connection, ssl.SSLSocket)
    raw = socket.socket(fileno=connection.detach())
    raw.shutdown(socket.SHUT_WR)
    raw.close()


def sending(data: bytes, end: Answer) -> Answer:
    def answer(connection: socket.socket) -> None:
        connection.sendall(data)
        end(connection)

    return answer


def head(*lines: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n" + b"".join(
        line + b"\r\n" for line in lines
    )


CLOSE_DELIMITED = head(b"Connection: close") + b"\r\n"


def never_answering_the_close(released: threading.Event) -> Answer:
    """Keeps the connection alive after a whole poem, and never reads the client's close_notify."""

    def answer(connection: socket.socket) -> None:
        connection.sendall(head(b"Content-Length: %d" % len(POEM)) + b"\r\n" + POEM)
        released.wait(WAIT)  # the close is never read, so never answered, until released

    return answer


def connections_to(port: int) -> list[object]:
    """The reactor's sockets connected to C{port} on this host."""
    found: list[object] = []
    for selectable in {*reactor.getReaders(), *reactor.getWriters()}:
        peer = getattr(selectable, "getPeer", lambda: None)()
        if getattr(peer, "port", None) == port:
            found.append(selectable)
    return found


class HostileTest(WebTest):
    def setUp(self) -> None:
        # Registered before WebTest's clean-up, so it runs after it: the
        # clients' pools are closed first.  A TLS server ending cleanly waits
        # in unwrap() for the client's close_notify, which a pooled
        # connection only sends when its pool closes; joining the server's
        # thread first would block the reactor until that wait timed out.
        self._hostiles: list[RawHTTPServer] = []
        self.addCleanup(self._close_hostiles)
        super().setUp()
        folder = Path(tempfile.mkdtemp(prefix="poetry-hostile-"))
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        self.ca = make_ca(folder)
        self.issued = self.ca.issue("server")

    def hostile(self, answer: Answer, *, tls: bool = False, connections: int = 1) -> str:
        server = RawHTTPServer(answer, tls=self.issued if tls else None, connections=connections)
        self._hostiles.append(server)
        self.server = server
        return server.url

    def _close_hostiles(self) -> None:
        for server in self._hostiles:
            server.close()

    def secure_client(self, **settings: object) -> PoetryClient:
        return self.client(cacert=str(self.ca.cert), **settings)

    async def failure(self, url: str, kind: str, **settings: object) -> PoetryError:
        error = await self.fail_with(self.secure_client(**settings).get(url))
        self.assertEqual(error.kind, kind, str(error))
        self.assertIn(url, str(error))
        self.assertNotIn("Failure", str(error))
        self.assertNotIn("<", str(error))
        return error


class CloseDelimitedBodyTests(HostileTest):
    """A body with no length and no chunking ends only with a clean close."""

    @inline
    async def test_a_reset_mid_body_is_incomplete(self) -> None:
        url = self.hostile(sending(CLOSE_DELIMITED + POEM, reset))
        error = await self.failure(url, "incomplete")
        self.assertIn("lost", str(error))

    @inline
    async def test_a_reset_mid_body_is_incomplete_over_https(self) -> None:
        url = self.hostile(sending(CLOSE_DELIMITED + POEM, reset), tls=True)
        await self.failure(url, "incomplete")

    @inline
    async def test_a_close_without_close_notify_is_incomplete(self) -> None:
        # The TLS truncation attack: whoever can send a FIN can end the body.
        url = self.hostile(sending(CLOSE_DELIMITED + POEM, truncate), tls=True)
        await self.failure(url, "incomplete")

    @inline
    async def test_close_notify_then_a_close_ends_the_body_whole(self) -> None:
        url = self.hostile(sending(CLOSE_DELIMITED + POEM, finish_cleanly), tls=True)
        poem = await self.secure_client().get(url)
        self.assertEqual(poem.data, POEM)

    @inline
    async def test_a_clean_close_ends_the_body_whole(self) -> None:
        url = self.hostile(sending(CLOSE_DELIMITED + POEM, finish_cleanly))
        poem = await self.secure_client().get(url)
        self.assertEqual(poem.data, POEM)

    @inline
    async def test_a_body_with_a_length_cut_by_a_reset_says_what_happened(self) -> None:
        response = head(b"Content-Length: %d" % (len(POEM) * 2)) + b"\r\n" + POEM
        url = self.hostile(sending(response, reset))
        await self.failure(url, "incomplete")


def gzip_head(length: int | None) -> bytes:
    if length is None:
        return head(b"Content-Encoding: gzip", b"Connection: close") + b"\r\n"
    return head(b"Content-Encoding: gzip", b"Content-Length: %d" % length) + b"\r\n"


ZIPPED = gzip.compress(POEM * 20)
HALF = ZIPPED[: len(ZIPPED) // 2]


class GzipTests(HostileTest):
    """A gzip body is a poem only when it is whole, valid gzip."""

    async def check_each_way(self, body: bytes, kind: str, end: Answer = finish_cleanly) -> None:
        for tls in (False, True):
            for length in (len(body), None):
                url = self.hostile(sending(gzip_head(length) + body, end), tls=tls)
                error = await self.failure(url, kind)
                self.assertIn("gzip", str(error))

    @inline
    async def test_half_a_gzip_stream_is_incomplete(self) -> None:
        await self.check_each_way(HALF, "incomplete")

    @inline
    async def test_a_body_that_is_not_gzip_is_a_decode_failure(self) -> None:
        await self.check_each_way(POEM, "decode", end=lambda connection: time.sleep(0.5))

    @inline
    async def test_several_gzip_members_are_one_poem(self) -> None:
        body = gzip.compress(POEM) + gzip.compress(b"and a second member\n")
        for tls in (False, True):
            url = self.hostile(sending(gzip_head(len(body)) + body, finish_cleanly), tls=tls)
            poem = await self.secure_client().get(url)
            self.assertEqual(poem.data, POEM + b"and a second member\n")

    @inline
    async def test_an_empty_gzip_body_is_an_empty_poem(self) -> None:
        url = self.hostile(sending(gzip_head(0), finish_cleanly))
        poem = await self.secure_client().get(url)
        self.assertEqual(poem.data, b"")

    @inline
    async def test_a_small_read_is_inflated_a_step_at_a_time(self) -> None:
        # 8 MiB of zeros packs into about 8 KiB, one read: inflated whole it
        # would reach the cap check as one 8 MiB string.
        body = gzip.compress(bytes(8 * 1024 * 1024))
        url = self.hostile(sending(gzip_head(len(body)) + body, finish_cleanly))
        seen: list[int] = []
        poem = await self.secure_client(max_bytes=None).get(url, progress=seen.append)
        self.assertEqual(len(poem.data), 8 * 1024 * 1024)
        steps = [after - before for before, after in zip([0, *seen], seen, strict=False)]
        self.assertLessEqual(max(steps), INFLATE_STEP)


class To(Resource):
    """A 302 to C{location}, counting its requests."""

    isLeaf = True

    def __init__(self, location: bytes) -> None:
        Resource.__init__(self)
        self.location = location
        self.requests = 0

    def render_GET(self, request: object) -> bytes:
        self.requests += 1
        request.setResponseCode(302)  # type: ignore[attr-defined]
        request.setHeader(b"location", self.location)  # type: ignore[attr-defined]
        return b"moved"


class RedirectTests(HostileTest):
    def plain_poem_site(self) -> str:
        root = Resource()
        root.putChild(b"poem", Page(POEM, UTF8))
        base, _ = self.serve(root)
        return base + "poem"

    def https_to(self, location: bytes) -> tuple[str, To]:
        root = Resource()
        hop = To(location)
        root.putChild(b"hop", hop)
        base, _ = self.serve(root, self.issued.server_options())
        return base.replace("127.0.0.1", "localhost") + "hop", hop

    @inline
    async def test_https_redirected_to_http_is_refused(self) -> None:
        plain = self.plain_poem_site()
        url, _ = self.https_to(plain.encode())
        error = await self.failure(url, "http-status")
        self.assertIn("302", str(error))
        self.assertIn("plain http", str(error))
        self.assertIn(plain, str(error))

    @inline
    async def test_a_downgrade_may_be_allowed(self) -> None:
        url, _ = self.https_to(self.plain_poem_site().encode())
        poem = await self.secure_client(allow_downgrade=True).get(url)
        self.assertEqual(poem.data, POEM)

    @inline
    async def test_http_redirected_to_https_is_followed(self) -> None:
        root = Resource()
        root.putChild(b"poem", Page(POEM, UTF8))
        secure, _ = self.serve(root, self.issued.server_options())
        secure = secure.replace("127.0.0.1", "localhost") + "poem"
        redirects = Resource()
        redirects.putChild(b"hop", Redirect(secure.encode()))
        plain, _ = self.serve(redirects)
        poem = await self.secure_client().get(plain + "hop")
        self.assertEqual(poem.data, POEM)

    @inline
    async def test_a_redirect_out_of_http_is_refused_and_not_retried(self) -> None:
        for location in (b"file:///etc/passwd", b"unix:/tmp/poetry.sock", b"tcp:127.0.0.1:1"):
            url, hop = self.https_to(location)
            error = await self.failure(url, "http-status", retries=2, backoff=0.01)
            self.assertIn("302 redirect to a URL that is not http(s)", str(error))
            self.assertIn(location.decode(), str(error))
            self.assertEqual(hop.requests, 1)

    @inline
    async def test_a_redirect_with_control_characters_is_refused_and_shown_escaped(self) -> None:
        location = b"http://127.0.0.1:1/\x1b]0;pwned\x07\x1b[2J"
        response = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        url = self.hostile(sending(response, finish_cleanly), connections=3)
        error = await self.failure(url, "http-status", retries=2, backoff=0.01)
        self.assertIn("302 redirect to a URL with control", str(error))
        self.assertIn("\\x1b]0;pwned\\x07\\x1b[2J", str(error))
        self.assertTrue(str(error).isprintable(), str(error))
        self.assertEqual(len(self.server.requests), 1)


class NameTests(HostileTest):
    @inline
    async def test_a_name_that_does_not_resolve_is_connect_failed(self) -> None:
        # The test network guard fails the lookup without a DNS query.
        url = "http://poetry-nowhere.invalid:8080/poem"
        error = await self.failure(url, "connect-failed")
        self.assertIn("name did not resolve", str(error))

    @inline
    async def test_cancelling_while_a_name_resolves_is_cancelled(self) -> None:
        # Cancelled mid-lookup, the endpoint reports a DNSLookupError: that
        # must not pass for connect-failed (which would even be retried).
        url = self.hostile(recording)
        download = self.secure_client(retries=2, backoff=0.01).get(url)
        download.cancel()
        error = await self.fail_with(download)
        self.assertEqual(error.kind, "cancelled", str(error))
        self.assertEqual(self.server.requests, [])


def recording(connection: socket.socket) -> None:
    connection.sendall(head(b"Content-Length: %d" % len(POEM)) + b"\r\n" + POEM)
    finish_cleanly(connection)


class UserAgentTests(HostileTest):
    def user_agent(self) -> bytes:
        [request] = self.server.requests
        [line] = [
            line for line in request.split(b"\r\n") if line.lower().startswith(b"user-agent:")
        ]
        return line.partition(b":")[2].strip()

    @inline
    async def test_requests_say_who_sends_them(self) -> None:
        url = self.hostile(recording)
        await self.secure_client().get(url)
        expected = f"poetry-endpoints/{version('poetry_endpoints')}"
        self.assertEqual(self.user_agent(), expected.encode())

    @inline
    async def test_the_user_agent_may_be_chosen_and_survives_a_redirect(self) -> None:
        url = self.hostile(recording)
        redirects = Resource()
        redirects.putChild(b"hop", Redirect(url.encode()))
        base, _ = self.serve(redirects)
        poem = await self.secure_client(user_agent="Rilke/1.0 (+elegies)").get(base + "hop")
        self.assertEqual(poem.data, POEM)
        self.assertEqual(self.user_agent(), b"Rilke/1.0 (+elegies)")

    def test_a_user_agent_that_could_inject_headers_is_refused(self) -> None:
        for bad in ("a\r\nX-Injected: 1", "", "caf\u00e9"):
            with self.assertRaises(ValueError):
                PoetryClient(reactor, user_agent=bad)


class UnansweredCloseTests(HostileTest):
    """
    A TLS server that never answers the client's close (close_notify): every
    close is bounded, and leaves no connection open.  Without the bound the
    close never fires, and trial fails the test at its timeout.
    """

    timeout = 5

    def unanswering(self) -> str:
        released = threading.Event()
        url = self.hostile(never_answering_the_close(released), tls=True)
        self.addCleanup(released.set)  # before the server's thread is joined
        return url

    @inline
    async def test_get_poetry_returns_promptly_and_leaves_no_connection(self) -> None:
        url = self.unanswering()
        started = reactor.seconds()
        poem = await get_poetry(reactor, url, cacert=str(self.ca.cert))
        took = reactor.seconds() - started
        self.assertEqual(poem.data, POEM)
        self.assertLess(took, DEFAULT_CLOSE_TIMEOUT + 3.0)
        self.assertEqual(connections_to(self.server.port), [])

    @inline
    async def test_async_with_ends_promptly_and_leaves_no_connection(self) -> None:
        url = self.unanswering()
        async with PoetryClient(reactor, cacert=str(self.ca.cert)) as client:
            poem = await client.get(url)
            self.assertEqual(len(connections_to(self.server.port)), 1)  # kept alive
            started = reactor.seconds()
        took = reactor.seconds() - started
        self.assertEqual(poem.data, POEM)
        self.assertLess(took, DEFAULT_CLOSE_TIMEOUT + 3.0)
        self.assertEqual(connections_to(self.server.port), [])

    @inline
    async def test_close_waits_its_timeout_then_aborts(self) -> None:
        url = self.unanswering()
        client = self.secure_client()
        poem = await client.get(url)
        self.assertEqual(poem.data, POEM)
        self.assertEqual(len(connections_to(self.server.port)), 1)  # kept alive
        started = reactor.seconds()
        await client.close(timeout=0.2)
        took = reactor.seconds() - started
        self.assertGreaterEqual(took, 0.2)  # waited for the server's answer first
        self.assertLess(took, 3.0)
        self.assertEqual(connections_to(self.server.port), [])


def get_from(answer: Answer, *options: str) -> tuple[Ran, str]:
    """Run C{get} with C{options} against a server that answers with C{answer}; and its URL."""
    server = RawHTTPServer(answer)
    try:
        outcome = run_cli("get", *options, server.url, wait=WAIT * 2)
    finally:
        server.close()
    return outcome, server.url


def test_cli_exits_1_when_a_reset_cuts_a_body_with_no_length() -> None:
    body = (POEM * 2)[:1011]
    outcome, url = get_from(sending(CLOSE_DELIMITED + body, reset), "-q")
    assert outcome.returncode == 1, outcome
    assert outcome.stdout == b""
    assert b"Traceback" not in outcome.stderr
    [line] = outcome.stderr.decode().splitlines()
    assert url in line and "incomplete" in line, line


def test_cli_json_says_decode_for_a_body_that_is_not_gzip() -> None:
    outcome, _ = get_from(sending(gzip_head(None) + POEM, finish_cleanly), "--json")
    assert outcome.returncode == 1, outcome
    assert b'"ok": false' in outcome.stdout and b'"kind": "decode"' in outcome.stdout, outcome
    assert b"Traceback" not in outcome.stderr


def test_cli_ends_soon_when_a_tls_server_never_answers_the_close(tmp_path: Path) -> None:
    """At its end, get closes a kept-alive connection, waiting DEFAULT_CLOSE_TIMEOUT at most."""
    ca = make_ca(tmp_path)
    answered = threading.Event()
    server = RawHTTPServer(never_answering_the_close(answered), tls=ca.issue("server"))
    try:
        started = time.monotonic()
        outcome = run_cli("get", "--cacert", str(ca.cert), server.url, wait=WAIT)
        took = time.monotonic() - started
    finally:
        answered.set()
        server.close()
    assert outcome.returncode == 0, outcome
    assert outcome.stdout == POEM
    assert took < DEFAULT_CLOSE_TIMEOUT + 5.0, took


def test_zlib_sees_half_a_stream_as_unfinished() -> None:
    # What the gzip checks rest on: a truncated stream inflates without error.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflater.decompress(HALF)
    assert not inflater.eof
