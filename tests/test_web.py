"""The poems over HTTP (`poetry_endpoints.servers.web`), served on loopback and fetched for real."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import treq
from certs import make_ca
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from web_helpers import WebTest, inline

from poetry_endpoints.servers.poetry import PoemFile, bundled_poems
from poetry_endpoints.servers.web import listening_url, make_site

POEMS = [
    PoemFile("first", b"one\n"),
    PoemFile("second", "deux, zwei, два\n".encode()),
    PoemFile("third", b"three\n"),
]


class Served(WebTest):
    def site(self, poems: list[PoemFile] = POEMS) -> str:
        port, _ = self.listening(make_site(poems))
        return listening_url(port, tls=False)

    async def fetch(self, url: str, method: str = "GET") -> tuple[int, bytes, list[bytes]]:
        # A fresh connection each time: nothing is left in the reactor after.
        response = await treq.request(method, url, persistent=False)
        body = await response.content()
        return response.code, body, response.headers.getRawHeaders(b"content-type")


class SiteTests(Served):
    @inline
    async def test_the_root_serves_the_poems_in_turn(self) -> None:
        url = self.site()
        bodies = [(await self.fetch(url))[1] for _ in range(4)]
        self.assertEqual(bodies, [p.data for p in POEMS] + [POEMS[0].data])

    @inline
    async def test_a_poem_by_name_is_plain_utf8(self) -> None:
        url = self.site()
        code, body, types = await self.fetch(url + "poems/second")
        self.assertEqual((code, body, types), (200, POEMS[1].data, [b"text/plain; charset=utf-8"]))

    @inline
    async def test_names_are_listed(self) -> None:
        url = self.site()
        for path in ("poems", "poems/"):
            code, body, _ = await self.fetch(url + path)
            self.assertEqual((code, body), (200, b"first\nsecond\nthird\n"))

    @inline
    async def test_anything_else_is_a_plain_404(self) -> None:
        url = self.site()
        for path in ("nothing", "poems/fourth", "poems/first/more", "first", "poems/%2e%2e"):
            code, body, types = await self.fetch(url + path)
            self.assertEqual(code, 404, path)
            self.assertEqual(types, [b"text/plain; charset=utf-8"])
            self.assertEqual(body, b"no such poem\n")

    @inline
    async def test_head_does_not_use_up_a_turn(self) -> None:
        url = self.site()
        code, body, _ = await self.fetch(url, "HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual((await self.fetch(url))[1], POEMS[0].data)

    @inline
    async def test_other_methods_are_not_allowed(self) -> None:
        url = self.site()
        code, _, _ = await self.fetch(url + "poems/first", "POST")
        self.assertEqual(code, 405)

    @inline
    async def test_non_ascii_names_are_reached_percent_encoded(self) -> None:
        url = self.site([PoemFile("été", b"summer\n")])
        code, body, _ = await self.fetch(url + "poems/%C3%A9t%C3%A9")
        self.assertEqual((code, body), (200, b"summer\n"))

    @inline
    async def test_the_poetry_client_gets_the_bundled_poems(self) -> None:
        url = self.site(bundled_poems())
        client = self.client()
        for poem in bundled_poems():
            got = await client.get(f"{url}poems/{poem.name}")
            self.assertEqual(got.data, poem.data)
            self.assertEqual(got.text, poem.data.decode("utf-8"))

    @inline
    async def test_served_over_tls_with_an_https_url(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="poetry-web-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        ca = make_ca(directory)
        options = ca.issue("server").server_options()
        port, _ = self.listening(make_site(POEMS), options)
        url = listening_url(port, tls=True)
        self.assertTrue(url.startswith("https://127.0.0.1:"))
        poem = await self.client(cacert=str(ca.cert)).get(url + "poems/third")
        self.assertEqual(poem.data, POEMS[2].data)


def test_make_site_needs_a_poem() -> None:
    with pytest.raises(ValueError):
        make_site([])


class _Port:
    def __init__(self, address: object) -> None:
        self.address = address

    def getHost(self) -> object:
        return self.address


@pytest.mark.parametrize(
    ("address", "tls", "url"),
    [
        (IPv4Address("TCP", "127.0.0.1", 8080), False, "http://127.0.0.1:8080/"),
        (IPv4Address("TCP", "0.0.0.0", 80), False, "http://127.0.0.1:80/"),
        (IPv4Address("TCP", "192.0.2.7", 8443), True, "https://192.0.2.7:8443/"),
        (IPv6Address("TCP", "::1", 8080), False, "http://[::1]:8080/"),
        (IPv6Address("TCP", "::", 8443), True, "https://[::1]:8443/"),
    ],
)
def test_listening_url(address: object, tls: bool, url: str) -> None:
    assert listening_url(_Port(address), tls) == url  # type: ignore[arg-type]


def test_listening_url_needs_tcp() -> None:
    with pytest.raises(ValueError, match="TCP"):
        listening_url(_Port(UNIXAddress("/run/poems.sock")), tls=False)  # type: ignore[arg-type]


def test_listening_url_of_a_real_port() -> None:
    port = MemoryReactor().listenTCP(0, make_site(POEMS), interface="127.0.0.1")
    assert listening_url(port, tls=False).startswith("http://127.0.0.1:")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
class IPv6Tests(Served):
    @inline
    async def test_served_on_ipv6_loopback(self) -> None:
        try:
            port, _ = self.listening(make_site(POEMS), interface="::1")
        except CannotListenError as e:  # ::1 may be absent even when Python has IPv6
            raise self.skipTest(f"cannot listen on ::1: {e}") from None
        url = listening_url(port, tls=False)
        self.assertTrue(url.startswith("http://[::1]:"))
        poem = await self.client().get(url + "poems/first")
        self.assertEqual(poem.data, POEMS[0].data)
