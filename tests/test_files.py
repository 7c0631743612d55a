"""
`write_poem` and `PoemFile`: a poem streamed into a file atomically, over
real loopback sockets, and in flat memory for a 1 GiB poem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.protocol import Factory, Protocol
from web_helpers import WebTest, inline, raw_factory

from conftest import subprocess_env
from poetry_endpoints import PoemFile, PoetryError, write_poem
from poetry_endpoints import files as files_module
from poetry_endpoints.files import remove_temporaries

POEM = "Ça, c'est un poème.\n".encode() * 1000


class _Serve(Protocol):
    def __init__(self, data: bytes, whole: bool) -> None:
        self._data, self._whole = data, whole

    def connectionMade(self) -> None:
        self.transport.write(self._data)  # type: ignore[union-attr]
        if self._whole:
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


class WritePoemTests(WebTest):
    def setUp(self) -> None:
        super().setUp()
        # Not trial's mktemp, which makes its folders under the working directory.
        self.folder = Path(tempfile.mkdtemp(prefix="poetry-files-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def source(self, data: bytes, whole: bool = True) -> str:
        port, _ = self.listen(Factory.forProtocol(lambda: _Serve(data, whole)))
        return f"tcp:127.0.0.1:{port}"

    @inline
    async def test_a_whole_poem_is_renamed_into_place(self) -> None:
        target = self.folder / "poem.txt"
        source = self.source(POEM)
        streamed = await write_poem(self.client(), source, target, encoding="utf-8")
        self.assertEqual(target.read_bytes(), POEM)
        self.assertEqual((streamed.source, streamed.bytes), (source, len(POEM)))
        self.assertEqual(leftovers(self.folder), [])

    @inline
    async def test_an_incomplete_poem_leaves_the_old_file_and_no_temporary(self) -> None:
        target = self.folder / "poem.txt"
        target.write_bytes(b"the old poem")
        error = await self.fail_with(
            write_poem(self.client(retries=2, backoff=0), self.source(POEM, whole=False), target)
        )
        self.assertEqual(error.kind, "incomplete")
        self.assertEqual(target.read_bytes(), b"the old poem")
        self.assertEqual(leftovers(self.folder), [])

    @inline
    async def test_a_decode_failure_mid_stream_removes_the_file(self) -> None:
        target = self.folder / "poem.txt"
        data = POEM + b"\xff" + POEM
        error = await self.fail_with(
            write_poem(self.client(), self.source(data), target, encoding="utf-8")
        )
        self.assertEqual(error.kind, "decode")
        self.assertIn("not valid utf-8", str(error))
        self.assertFalse(target.exists())
        self.assertEqual(leftovers(self.folder), [])

    @inline
    async def test_a_truncated_character_at_the_end_is_a_decode_failure(self) -> None:
        target = self.folder / "poem.txt"
        error = await self.fail_with(
            write_poem(
                self.client(), self.source(POEM + "é".encode()[:1]), target, encoding="utf-8"
            )
        )
        self.assertEqual(error.kind, "decode")
        self.assertFalse(target.exists())
        self.assertEqual(leftovers(self.folder), [])

    @inline
    async def test_a_symlink_at_the_final_name_is_replaced_not_followed(self) -> None:
        victim = self.folder / "victim"
        victim.write_bytes(b"precious")
        target = self.folder / "poem.txt"
        target.symlink_to(victim)
        await write_poem(self.client(), self.source(POEM), target)
        self.assertFalse(target.is_symlink())
        self.assertEqual(target.read_bytes(), POEM)
        self.assertEqual(victim.read_bytes(), b"precious")

    @inline
    async def test_cancelling_removes_the_temporary(self) -> None:
        target = self.folder / "poem.txt"
        port, _ = self.listen(Factory.forProtocol(Protocol))  # says nothing, never closes
        writing = write_poem(self.client(), f"tcp:127.0.0.1:{port}", target)
        self.assertEqual(len(leftovers(self.folder)), 1)
        writing.cancel()
        error = await self.fail_with(writing)
        self.assertEqual(error.kind, "cancelled")
        self.assertEqual(leftovers(self.folder), [])
        self.assertFalse(target.exists())


LATIN_1 = "Ça, c'est un poème.\n".encode("latin-1") * 100  # not UTF-8: \xc7 then "a"


def http_response(body: bytes, content_type: bytes | None) -> bytes:
    """A whole HTTP/1.1 response declaring C{content_type} (or no Content-Type)."""
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class DeclaredCharsetTests(WebTest):
    """A file from an HTTP source is checked with the charset its server declares."""

    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="poetry-files-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.target = self.folder / "poem.txt"

    def url(self, body: bytes, content_type: bytes | None) -> str:
        port, _ = self.listen(raw_factory(http_response(body, content_type)))
        return f"http://127.0.0.1:{port}/poem"

    @inline
    async def test_the_declared_charset_decides_which_poem_is_kept(self) -> None:
        url = self.url(LATIN_1, b"text/plain; charset=latin-1")
        streamed = await write_poem(self.client(), url, self.target)
        self.assertEqual((self.target.read_bytes(), streamed.bytes), (LATIN_1, len(LATIN_1)))
        self.target.unlink()
        # The same bytes declared UTF-8, or nothing declared (UTF-8 then).
        for content_type in (b"text/plain; charset=utf-8", b"text/plain", None):
            error = await self.fail_with(
                write_poem(self.client(), self.url(LATIN_1, content_type), self.target)
            )
            self.assertEqual(error.kind, "decode", content_type)
            self.assertIn("not valid utf-8", error.reason)
            self.assertEqual(list(self.folder.iterdir()), [], content_type)

    @inline
    async def test_a_declared_codec_that_cannot_decode_a_poem_leaves_no_file(self) -> None:
        for charset, why in [
            (b"punycode", "too slow"),
            (b"rot13", "not a text encoding"),
            (b"no-such-charset", "unknown charset"),
        ]:
            for body in (b"plain ascii", b""):
                url = self.url(body, b"text/plain; charset=" + charset)
                error = await self.fail_with(write_poem(self.client(), url, self.target))
                self.assertEqual(error.kind, "decode", charset)
                self.assertIn(why, error.reason)
                self.assertEqual(list(self.folder.iterdir()), [], (charset, body))
        # An encoding the caller chose wins over the server's word, as for get.
        url = self.url(LATIN_1, b"text/plain; charset=punycode")
        await write_poem(self.client(encoding="cp1252"), url, self.target)
        self.assertEqual(self.target.read_bytes(), LATIN_1)

    @inline
    async def test_unchecked_keeps_any_bytes(self) -> None:
        url = self.url(LATIN_1, b"text/plain; charset=punycode")
        await write_poem(self.client(), url, self.target, check=False)
        self.assertEqual(self.target.read_bytes(), LATIN_1)

    @inline
    async def test_a_sink_whose_charset_hook_raises_fails_with_its_exception(self) -> None:
        class Refusing:
            def __call__(self, data: bytes) -> None:
                raise AssertionError("no byte may reach the sink")

            def charset_declared(self, charset: str | None) -> None:
                raise RuntimeError(f"refused {charset}")

        url = self.url(LATIN_1, b"text/plain; charset=latin-1")
        client = self.client()
        with self.assertRaisesRegex(RuntimeError, "refused latin-1"):
            await client.stream(url, Refusing())


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def test_a_symlink_planted_at_the_temporary_name_is_never_followed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter(["planted0", "free0000"])
    monkeypatch.setattr(files_module.secrets, "token_hex", lambda n: next(names))
    victim = folder / "victim"
    victim.write_bytes(b"precious")
    (folder / ".poem.txt.planted0.part").symlink_to(victim)
    poem_file = PoemFile(folder / "poem.txt")
    assert poem_file.temporary.name == ".poem.txt.free0000.part"
    poem_file(b"a poem")
    poem_file.commit()
    assert (folder / "poem.txt").read_bytes() == b"a poem"
    assert victim.read_bytes() == b"precious"


def test_remove_temporaries_removes_every_uncommitted_file(folder: Path) -> None:
    first, second = PoemFile(folder / "a"), PoemFile(folder / "b")
    first.write(b"half")
    assert len(leftovers(folder)) == 2
    remove_temporaries()
    assert leftovers(folder) == []
    second.discard()  # a second removal does nothing
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_poem_file_refuses_an_encoding_that_cannot_decode_a_poem(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"^encoding 'rot13' is not a text encoding"):
        PoemFile(folder / "a", encoding="rot13")
    assert list(folder.iterdir()) == []


def test_a_decode_error_names_the_source_and_the_position(folder: Path) -> None:
    poem_file = PoemFile(folder / "a", encoding="utf-8", source="tcp:h:1")
    poem_file.write(b"abc")
    with pytest.raises(PoetryError, match=r"^tcp:h:1: .*not valid utf-8.* byte 4") as caught:
        poem_file.write(b"d\xffe")
    assert caught.value.kind == "decode"
    poem_file.discard()


GiB = 1024 * 1024 * 1024

_ONE_GIB = """
import os, socket, sys, threading
from twisted.internet import reactor
from poetry_endpoints import PoetryClient, write_poem

size, target = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)

def serve():
    connection, _ = listener.accept()
    block = b"x" * (1024 * 1024)
    with connection:
        for _ in range(size // len(block)):
            connection.sendall(block)

threading.Thread(target=serve, daemon=True).start()
client = PoetryClient(reactor, max_bytes=2 * size)
result = []

def start():
    d = write_poem(client, f"tcp:127.0.0.1:{listener.getsockname()[1]}", target)
    d.addBoth(result.append).addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(start)
reactor.run()
with open("/proc/self/status", encoding="ascii") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(result[0].bytes, os.path.getsize(target), peak)
"""


def test_a_1_gib_poem_goes_to_a_file_in_flat_memory(folder: Path) -> None:
    target = folder / "big"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_ONE_GIB), str(GiB), str(target)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    streamed, size, peak = map(int, done.stdout.split())
    assert streamed == size == GiB
    # The process's own peak: the interpreter, Twisted, a 4 MiB read and a
    # 1 MiB write buffer; nothing that grows with the poem.
    assert peak < 100 * 1024 * 1024, peak
    os.unlink(target)
