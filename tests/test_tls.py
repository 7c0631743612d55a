"""
TLS that verifies by default: ``https:`` and ``tls:`` sources against real
TLS servers on 127.0.0.1, with certificates made for the test (tests/certs.py).

A certificate the client cannot verify, for whatever reason, is kind ``tls``
naming the reason; it is never accepted unverified nor read as plaintext.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from certs import LOOPBACK_NAMES, Issued, make_ca, self_signed
from cryptography import x509
from inprocess import run_cli
from serve_process import Running
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.web.resource import Resource
from twisted.web.server import Site
from web_helpers import Page, Redirect, WebTest, inline, reactor

from conftest import run_main
from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.servers.poetry import PoemFile, PoetryServerFactory
from poetry_endpoints.tls import PlatformTrustPlusCA, tls_client_endpoint

POEM = b"Whose woods these are I think I know.\n"
HERE = Path(__file__).parent


def poem_site() -> Resource:
    root = Resource()
    root.putChild(b"poem", Page(POEM, b"text/plain; charset=utf-8"))
    return root


def poetry_factory() -> PoetryServerFactory:
    return PoetryServerFactory([PoemFile("woods", POEM)], reactor)


class TLSTest(WebTest):
    def setUp(self) -> None:
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="poetry-tls-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.ca = make_ca(self.dir)
        self.cacert = str(self.ca.cert)

    def https(self, issued: Issued) -> str:
        base, _ = self.serve(poem_site(), issued.server_options())
        return base.replace("127.0.0.1", "localhost") + "poem"

    def tls(self, issued: Issued, host: str = "localhost") -> str:
        port, _ = self.listen(poetry_factory(), issued.server_options())
        return f"tls:{host}:{port}"

    async def rejected(self, source: str, **settings: Any) -> PoetryError:
        error = await self.fail_with(self.client(**settings).get(source))
        self.assertEqual(error.kind, "tls", str(error))
        self.assertIn("TLS failed", str(error))
        self.assertIn(source, str(error))
        return error


class VerifiedByDefaultTests(TLSTest):
    @inline
    async def test_an_unknown_ca_is_rejected_then_accepted_with_cacert(self) -> None:
        good = self.ca.issue("good")
        for source in (self.https(good), self.tls(good)):
            error = await self.rejected(source)
            self.assertIn("certificate verify failed", str(error))
            poem = await self.client(cacert=self.cacert).get(source)
            self.assertEqual(poem.data, POEM)

    @inline
    async def test_every_loopback_name_in_the_certificate_verifies(self) -> None:
        good = self.ca.issue("good")
        https = self.https(good)
        tls = self.tls(good)
        client = self.client(cacert=self.cacert)
        for host in ("localhost", "127.0.0.1"):
            poem = await client.get(https.replace("localhost", host))
            self.assertEqual(poem.data, POEM)
            poem = await client.get(tls.replace("localhost", host))
            self.assertEqual(poem.data, POEM)

    @inline
    async def test_an_ipv6_literal_is_verified_as_an_address(self) -> None:
        good = self.ca.issue("good")
        wrong = self.ca.issue("wrong", ("localhost", "127.0.0.1"))
        urls = []
        for issued in (good, wrong):
            try:
                port, _ = self.listen(Site(poem_site()), issued.server_options(), "::1")
            except CannotListenError as e:
                raise self.skipTest(f"cannot listen on ::1: {e}") from None
            urls.append(f"https://[::1]:{port}/poem")
        client = self.client(cacert=self.cacert)
        poem = await client.get(urls[0])
        self.assertEqual(poem.data, POEM)
        error = await self.rejected(urls[1], cacert=self.cacert)
        self.assertIn("not valid for ::1", str(error))

    @inline
    async def test_a_self_signed_certificate_is_rejected_unless_given(self) -> None:
        alone = self_signed(self.dir, "alone")
        for source in (self.https(alone), self.tls(alone)):
            await self.rejected(source)
            await self.rejected(source, cacert=self.cacert)
            poem = await self.client(cacert=str(alone.cert)).get(source)
            self.assertEqual(poem.data, POEM)

    @inline
    async def test_a_wrong_host_certificate_is_rejected_even_with_cacert(self) -> None:
        wrong = self.ca.issue("wrong", ("poetry.example",))
        for source in (self.https(wrong), self.tls(wrong)):
            error = await self.rejected(source, cacert=self.cacert)
            self.assertIn("not valid for localhost", str(error))
        error = await self.rejected(self.tls(wrong, "127.0.0.1"), cacert=self.cacert)
        self.assertIn("not valid for 127.0.0.1", str(error))

    @inline
    async def test_a_certificate_naming_no_host_is_rejected(self) -> None:
        # Twisted's own callback logs this case and accepts the certificate.
        nameless = self.ca.issue("nameless", ())
        for source in (self.https(nameless), self.tls(nameless)):
            error = await self.rejected(source, cacert=self.cacert)
            self.assertIn("subjectAltName", str(error))

    @inline
    async def test_a_plaintext_server_is_never_read_as_tls(self) -> None:
        port, _ = self.listen(poetry_factory())
        for source in (f"https://localhost:{port}/", f"tls:localhost:{port}"):
            error = await self.rejected(source, cacert=self.cacert)
            # OpenSSL's words for a plaintext reply differ between its versions.
            self.assertRegex(str(error), "wrong version number|packet length too long")
        # A web server waits for the end of a request line, which a TLS hello
        # holds only when its random bytes happen to contain a newline (often:
        # a hello has over a hundred of them); then the server's plaintext
        # "400 Bad Request" is refused as above.  Either way, no poem.
        base, _ = self.serve(poem_site())
        https = base.replace("http:", "https:") + "poem"
        error = await self.fail_with(self.client(idle_timeout=0.2).get(https))
        if error.kind == "tls":
            self.assertRegex(str(error), "wrong version number|packet length too long")
        else:
            self.assertEqual(error.kind, "timeout")

    @inline
    async def test_trust_roots_replace_the_platform_and_cacert(self) -> None:
        good = self.ca.issue("good")
        port, _ = self.listen(poetry_factory(), good.server_options())
        roots = self.dir / "roots"
        roots.mkdir()
        (roots / "ca.pem").write_bytes(self.ca.cert.read_bytes())
        poem = await self.client().get(f"tls:localhost:{port}:trustRoots={roots}")
        self.assertEqual(poem.data, POEM)
        other = make_ca(self.dir, "another CA")
        elsewhere = self.dir / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "ca.pem").write_bytes(other.cert.read_bytes())
        await self.rejected(f"tls:localhost:{port}:trustRoots={elsewhere}", cacert=self.cacert)

    @inline
    async def test_tls_fields_are_honoured(self) -> None:
        good = self.ca.issue("good")
        port, tracked = self.listen(poetry_factory(), good.server_options())
        inner = f"tcp\\:127.0.0.1\\:{port}"
        client = self.client(cacert=self.cacert)
        poem = await client.get(f"tls:localhost:{port}:timeout=5:bindAddress=127.0.0.1")
        self.assertEqual(poem.data, POEM)
        # endpoint=: the TLS name is still checked, over another transport.
        poem = await client.get(f"tls:localhost:{port}:endpoint={inner}")
        self.assertEqual(poem.data, POEM)
        await self.rejected(f"tls:poetry.example:{port}:endpoint={inner}", cacert=self.cacert)
        self.assertEqual(tracked.accepted, 3)

    @inline
    async def test_tls_client_endpoint(self) -> None:
        good = self.ca.issue("good")
        port, _ = self.listen(poetry_factory(), good.server_options())
        endpoint = tls_client_endpoint(reactor, "localhost", port, cacert=self.cacert)
        poem = await self.client().get(endpoint)
        self.assertEqual(poem.data, POEM)
        wrapped = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        strict = tls_client_endpoint(reactor, "localhost", port, wrapped=wrapped)
        error = await self.fail_with(self.client().get(strict))
        self.assertEqual(error.kind, "tls")

    @inline
    async def test_https_redirect_to_an_untrusted_host_fails(self) -> None:
        good = self.ca.issue("good")
        wrong = self.ca.issue("wrong", ("poetry.example",))
        target = self.https(wrong)
        root = Resource()
        root.putChild(b"go", Redirect(target.encode()))
        base, _ = self.serve(root, good.server_options())
        error = await self.rejected(base + "go", cacert=self.cacert)
        self.assertIn("not valid for localhost", str(error))


def test_cacert_must_be_readable_pem(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        PoetryClient(reactor, cacert=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        PoetryClient(reactor, cacert=str(junk))


def test_the_ca_file_may_hold_several_certificates(tmp_path: Path) -> None:
    first, second = make_ca(tmp_path, "first"), make_ca(tmp_path, "second")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.cert.read_bytes() + second.cert.read_bytes())
    assert len(PlatformTrustPlusCA(str(bundle))._certificates) == 2


def test_loopback_names_are_in_test_certificates(tmp_path: Path) -> None:
    issued = make_ca(tmp_path).issue("server")
    certificate = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    found = [str(n.value) for n in names]
    assert found == list(LOOPBACK_NAMES)


def test_cli_mixes_https_tls_and_tcp_with_per_source_certificate_failures(
    tmp_path: Path,
) -> None:
    ca = make_ca(tmp_path)
    good, wrong = ca.issue("good"), ca.issue("wrong", ("poetry.example",))
    argv = [
        sys.executable,
        str(HERE / "tls_servers.py"),
        *(str(p) for p in (good.cert, good.key, wrong.cert, wrong.key)),
    ]
    with Running(argv) as servers:
        https, tls, wrong_https, wrong_tls, tcp = servers.sources(5)
        https = https.replace("127.0.0.1", "localhost") + "poems/haiku"
        sources = [https, tls, tcp, wrong_https, wrong_tls]

        def get(*options: str) -> tuple[int, list[dict[str, Any]]]:
            # The command in this process, on a reactor of its own that TLS must
            # use too (its timers once went to the global one); the servers in theirs.
            result = run_cli("get", "--json", *options, *sources, wait=30)
            lines = result.stdout.decode().splitlines()
            return result.returncode, [json.loads(line) for line in lines]

        status, results = get("--cacert", str(ca.cert))
        assert status == 1
        assert [r["source"] for r in results] == sources
        assert [r["ok"] for r in results] == [True, True, True, False, False]
        haiku = (HERE.parent / "poetry_endpoints" / "poems" / "haiku.txt").read_text()
        assert results[0]["poem"] == haiku
        assert results[1]["poem"] == results[2]["poem"] != ""
        assert [r["kind"] for r in results[3:]] == ["tls", "tls"]
        assert all("not valid for" in r["message"] for r in results[3:])

        status, results = get()
        assert status == 1
        assert [r["ok"] for r in results] == [False, False, True, False, False]
        assert all(r["kind"] == "tls" for r in results if not r["ok"])


def test_cli_refuses_a_cacert_without_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process: the file is read before the reactor runs.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    status, _, err = run_main(["get", "--cacert", str(junk), "tcp:127.0.0.1:9"], capsys)
    assert status == 2
    assert "no PEM certificate" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "source", ["ssl:localhost:443", "ssl:host=localhost:port=443:caCertsDir=/etc/ssl/certs"]
)
def test_ssl_descriptions_are_refused_because_they_do_not_verify(source: str) -> None:
    """Twisted's ssl: client checks no host name: a source must not silently skip that."""
    from twisted.internet.testing import MemoryReactor

    from poetry_endpoints import PoetryError, parse_source

    with pytest.raises(PoetryError) as caught:
        parse_source(MemoryReactor(), source)
    assert caught.value.kind == "invalid-source"
    assert "use tls:HOST:PORT" in str(caught.value)
    assert str(caught.value).startswith(source)
