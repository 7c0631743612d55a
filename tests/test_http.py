"""
HTTP sources against real twisted.web servers on 127.0.0.1, in the trial reactor.

What the server saw tells an abort from a gentle close: a client that cuts
the connection (RST) shows up there as ``ConnectionLost``.
"""

from __future__ import annotations

import gzip

from twisted.internet.error import ConnectionLost
from twisted.internet.task import deferLater
from twisted.web.pages import notFound
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory
from web_helpers import Page, Redirect, Stall, WebTest, inline, raw_factory, reactor

from poetry_endpoints import PoetryClient, get_poetry
from poetry_endpoints.http import ERROR_BODY_MAX_BYTES, MAX_REDIRECTS

POEM = "Rose, oh pure contradiction, delight\nof being no one's sleep under so many lids.\n"
UTF8 = b"text/plain; charset=utf-8"


class Root(Resource):
    def getChild(self, path: bytes, request: object) -> Resource:
        return notFound()  # type: ignore[no-any-return]


def site(**children: Resource) -> Resource:
    root = Root()
    for name, child in children.items():
        root.putChild(name.encode("ascii"), child)
    return root


class PlainHTTPTests(WebTest):
    @inline
    async def test_a_poem_over_http(self) -> None:
        base, _ = self.serve(site(poem=Page(POEM.encode(), UTF8)))
        poem = await self.client().get(base + "poem")
        self.assertEqual(poem.text, POEM)
        self.assertEqual(poem.data, POEM.encode())
        self.assertEqual(poem.source, base + "poem")
        self.assertEqual(poem.encoding, "utf-8")

    @inline
    async def test_one_client_reuses_one_connection(self) -> None:
        base, tracked = self.serve(site(poem=Page(POEM.encode(), UTF8)))
        client = self.client()
        for _ in range(3):
            poem = await client.get(base + "poem")
            self.assertEqual(poem.text, POEM)
        self.assertEqual(tracked.accepted, 1)
        await client.close()
        await tracked.quiet()
        self.assertEqual(tracked.protocols, {})

    @inline
    async def test_get_poetry_leaves_no_connection_open(self) -> None:
        base, tracked = self.serve(site(poem=Page(POEM.encode(), UTF8)))
        poem = await get_poetry(reactor, base + "poem")
        self.assertEqual(poem.text, POEM)
        # The server would keep it open for a minute: only the client closes it.
        await tracked.quiet().addTimeout(5, reactor)
        self.assertEqual((tracked.accepted, len(tracked.lost)), (1, 1))

    @inline
    async def test_not_found_is_http_status_with_the_status(self) -> None:
        base, _ = self.serve(site())
        error = await self.fail_with(self.client().get(base + "missing"))
        self.assertEqual(error.kind, "http-status")
        self.assertIn("404", str(error))
        self.assertIn("Not Found", str(error))
        self.assertIn(base + "missing", str(error))

    @inline
    async def test_a_huge_error_page_is_still_http_status(self) -> None:
        page = Page(b"x" * (ERROR_BODY_MAX_BYTES * 4), UTF8, code=500)
        base, _ = self.serve(site(oops=page))
        error = await self.fail_with(self.client().get(base + "oops"))
        self.assertEqual(error.kind, "http-status")
        self.assertIn("500", str(error))

    @inline
    async def test_a_redirect_chain_is_followed(self) -> None:
        root = site(poem=Page(POEM.encode(), UTF8))
        for hop in range(1, 6):
            target = b"/poem" if hop == 1 else f"/hop{hop - 1}".encode()
            root.putChild(f"hop{hop}".encode(), Redirect(target))
        base, _ = self.serve(root)
        poem = await self.client().get(base + "hop5")
        self.assertEqual(poem.text, POEM)
        self.assertEqual(poem.source, base + "hop5")

    @inline
    async def test_a_redirect_loop_is_an_error(self) -> None:
        base, tracked = self.serve(site(loop=Redirect(b"/loop")))
        error = await self.fail_with(self.client().get(base + "loop"))
        self.assertEqual(error.kind, "http-status")
        self.assertIn(f"more than {MAX_REDIRECTS} redirects", str(error))
        # Redirects reuse the pool's connections rather than open one each.
        self.assertLessEqual(tracked.accepted, 2)

    @inline
    async def test_a_redirect_without_location_is_an_error(self) -> None:
        base, _ = self.serve(site(nowhere=Redirect(None)))
        error = await self.fail_with(self.client().get(base + "nowhere"))
        self.assertEqual(error.kind, "http-status")
        self.assertIn("302", str(error))

    @inline
    async def test_connection_refused_is_connect_failed(self) -> None:
        port = reactor.listenTCP(0, raw_factory(b""), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        error = await self.fail_with(self.client().get(f"http://127.0.0.1:{number}/"))
        self.assertEqual(error.kind, "connect-failed")
        self.assertIn("refused", str(error))

    @inline
    async def test_a_body_ended_by_closing_is_whole(self) -> None:
        # HTTP/1.0 style: no length, the body ends when the server closes.
        number, _ = self.listen(raw_factory(b"HTTP/1.0 200 OK\r\n\r\n" + POEM.encode()))
        poem = await self.client().get(f"http://127.0.0.1:{number}/")
        self.assertEqual(poem.text, POEM)

    @inline
    async def test_a_body_shorter_than_its_length_is_incomplete(self) -> None:
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + POEM.encode()
        number, _ = self.listen(raw_factory(response))
        error = await self.fail_with(self.client().get(f"http://127.0.0.1:{number}/"))
        self.assertEqual(error.kind, "incomplete")

    @inline
    async def test_gzip_is_decoded(self) -> None:
        page = EncodingResourceWrapper(Page(POEM.encode() * 50, UTF8), [GzipEncoderFactory()])
        base, _ = self.serve(site(zipped=page))
        poem = await self.client().get(base + "zipped")
        self.assertEqual(poem.text, POEM * 50)
        self.assertNotEqual(gzip.compress(poem.data), poem.data)


class CharsetTests(WebTest):
    @inline
    async def test_the_declared_charset_is_used(self) -> None:
        latin = "Ça, c'est la fête à la Nöel\n"
        russian = "Мороз и солнце; день чудесный!\n"
        base, _ = self.serve(
            site(
                latin=Page(latin.encode("latin-1"), b"text/plain; charset=ISO-8859-1"),
                koi=Page(russian.encode("koi8-r"), b'text/plain; charset="KOI8-R"'),
            )
        )
        client = self.client()
        poem = await client.get(base + "latin")
        self.assertEqual(poem.text, latin)
        self.assertEqual(poem.data, latin.encode("latin-1"))
        poem = await client.get(base + "koi")
        self.assertEqual(poem.text, russian)
        self.assertEqual(poem.encoding.lower(), "koi8-r")

    @inline
    async def test_an_explicit_encoding_wins_over_the_declared_one(self) -> None:
        text = "Ça, c'est la fête\n"
        # The server says Latin-1 but sends UTF-8; the caller knows better.
        base, _ = self.serve(site(liar=Page(text.encode(), b"text/plain; charset=iso-8859-1")))
        trusting = await self.client().get(base + "liar")
        self.assertNotEqual(trusting.text, text)
        knowing = await self.client(encoding="utf-8").get(base + "liar")
        self.assertEqual(knowing.text, text)

    @inline
    async def test_no_charset_means_utf8(self) -> None:
        base, _ = self.serve(site(poem=Page(POEM.encode(), b"text/plain")))
        poem = await self.client().get(base + "poem")
        self.assertEqual((poem.text, poem.encoding), (POEM, "utf-8"))

    @inline
    async def test_an_unknown_charset_is_a_decode_error(self) -> None:
        base, _ = self.serve(site(odd=Page(b"abc", b"text/plain; charset=x-no-such-codec")))
        error = await self.fail_with(self.client().get(base + "odd"))
        self.assertEqual(error.kind, "decode")
        self.assertIn("x-no-such-codec", str(error))


class LimitTests(WebTest):
    @inline
    async def test_a_body_over_max_bytes_is_too_large_and_aborted(self) -> None:
        stall = Stall(b"x" * 100_000)
        base, tracked = self.serve(site(big=stall))
        error = await self.fail_with(self.client(max_bytes=10_000).get(base + "big"))
        self.assertEqual(error.kind, "too-large")
        self.assertIn("10000", str(error))
        await tracked.quiet()
        # The server never finished the body: only the client's abort ended it.
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)

    @inline
    async def test_a_stall_mid_body_is_an_idle_timeout(self) -> None:
        base, tracked = self.serve(site(stall=Stall(b"The first line, then nothing\n")))
        error = await self.fail_with(self.client(idle_timeout=0.2).get(base + "stall"))
        self.assertEqual(error.kind, "timeout")
        self.assertIn("idle", str(error))
        self.assertIn("29 bytes", str(error))
        await tracked.quiet()
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)

    @inline
    async def test_no_response_at_all_is_an_idle_timeout(self) -> None:
        base, tracked = self.serve(site(mute=Stall(b"", headers=False)))
        error = await self.fail_with(self.client(idle_timeout=0.2).get(base + "mute"))
        self.assertEqual(error.kind, "timeout")
        await tracked.quiet()
        self.assertEqual(len(tracked.lost), 1)

    @inline
    async def test_the_whole_attempt_timeout_applies(self) -> None:
        base, tracked = self.serve(site(stall=Stall(b"a start\n")))
        client = self.client(timeout=0.3, idle_timeout=None)
        error = await self.fail_with(client.get(base + "stall"))
        self.assertEqual(error.kind, "timeout")
        self.assertIn("0.3", str(error))
        await tracked.quiet()
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)

    @inline
    async def test_cancel_mid_body_aborts_the_connection(self) -> None:
        stall = Stall(b"The first line, then nothing\n")
        base, tracked = self.serve(site(stall=stall))
        client = self.client(idle_timeout=None)
        seen: list[int] = []

        def progress(received: int) -> None:
            seen.append(received)
            reactor.callLater(0, download.cancel)

        download = client.get(base + "stall", progress=progress)
        error = await self.fail_with(download)
        self.assertEqual(error.kind, "cancelled")
        self.assertEqual(seen, [29])
        await tracked.quiet()
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)
        self.assertEqual(len(stall.requests), 1)

    @inline
    async def test_cancel_before_the_response_aborts_the_connection(self) -> None:
        stall = Stall(b"", headers=False)
        base, tracked = self.serve(site(mute=stall))
        client = self.client(idle_timeout=None)
        download = client.get(base + "mute")
        while not stall.requests:
            await deferLater(reactor, 0.01)
        download.cancel()
        error = await self.fail_with(download)
        self.assertEqual(error.kind, "cancelled")
        await tracked.quiet()
        [reason] = tracked.lost
        self.assertTrue(reason.check(ConnectionLost), reason)

    @inline
    async def test_a_cancelled_download_leaves_the_client_usable(self) -> None:
        base, _ = self.serve(site(poem=Page(POEM.encode(), UTF8), stall=Stall(b"x")))
        client: PoetryClient = self.client(idle_timeout=None)
        download = client.get(base + "stall", progress=lambda n: download.cancel())
        error = await self.fail_with(download)
        self.assertEqual(error.kind, "cancelled")
        poem = await client.get(base + "poem")
        self.assertEqual(poem.text, POEM)
