"""
``get -o -`` in process: the one poem's bytes reach stdout as they arrive.

The client is a stand-in whose stream the test feeds chunk by chunk, so
each step (a chunk arriving, the poem ending or failing) is checked on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from poetry_endpoints.cli.fetch import Fetch, Presentation, Streams
from poetry_endpoints.cli.runner import Interruption
from poetry_endpoints.errors import PoetryError
from poetry_endpoints.sources import HTTPSource

NAME = "http://127.0.0.1/poem"


@dataclass(frozen=True)
class _Summary:
    source: str
    bytes: int
    elapsed: float = 0.0


class _Client:
    """Stands for a `PoetryClient`: one stream the test feeds."""

    concurrency = 1
    max_bytes = 1 << 20
    encoding: str | None = None

    def __init__(self) -> None:
        self.sink: Any = None
        self.download: Deferred[_Summary] | None = None
        self.delivered = 0

    def stream(self, source: HTTPSource, sink: Any, *, progress: Any = None) -> Deferred[_Summary]:
        def cancel(download: Deferred[_Summary]) -> None:
            download.errback(PoetryError(source.name, "cancelled", "cancelled"))

        self.sink = sink
        self.download = Deferred(cancel)
        return self.download

    def arrive(self, data: bytes) -> None:
        self.sink(data)
        self.delivered += len(data)

    def finish(self) -> None:
        assert self.download is not None
        self.download.callback(_Summary(NAME, self.delivered))

    def fail(self, kind: str, reason: str) -> None:
        assert self.download is not None
        self.download.errback(PoetryError(NAME, kind, reason))  # type: ignore[arg-type]


class _Terminal(BytesIO):
    def isatty(self) -> bool:
        return True


def _run(client: _Client, stdout: BytesIO) -> tuple[Deferred[int], StringIO]:
    stderr = StringIO()
    fetch = Fetch(
        MemoryReactorClock(),
        client,  # type: ignore[arg-type]
        [HTTPSource(NAME, NAME)],
        Presentation(raw_stdout=True),
        Interruption(),
        Streams(stdout=stdout, stderr=stderr),
    )
    return Deferred.fromCoroutine(fetch.run()), stderr


def test_each_chunk_is_written_as_it_arrives_exactly_as_received() -> None:
    client = _Client()
    stdout = BytesIO()
    run, stderr = _run(client, stdout)
    client.arrive(b"first \x1b[31m \xff")
    assert stdout.getvalue() == b"first \x1b[31m \xff"  # before the poem is whole
    client.arrive(b" second, no newline")
    assert not run.called
    client.finish()
    assert stdout.getvalue() == b"first \x1b[31m \xff second, no newline"
    assert run.result == 0
    assert stderr.getvalue() == ""


def test_a_failure_after_bytes_were_written_says_how_many() -> None:
    client = _Client()
    stdout = BytesIO()
    run, stderr = _run(client, stdout)
    client.arrive(b"x" * 1234)
    client.fail("incomplete", "the connection was lost")
    assert run.result == 1
    assert stdout.getvalue() == b"x" * 1234
    assert stderr.getvalue() == (
        f"poetry-endpoints: {NAME}: the connection was lost, "
        "after 1,234 bytes were written to stdout [incomplete]\n"
    )


def test_a_failure_before_any_byte_is_the_usual_line() -> None:
    client = _Client()
    run, stderr = _run(client, BytesIO())
    client.fail("connect-failed", "connection refused")
    assert run.result == 1
    assert stderr.getvalue() == f"poetry-endpoints: {NAME}: connection refused [connect-failed]\n"


def test_on_a_terminal_each_chunk_is_shown_with_its_controls_made_visible() -> None:
    client = _Client()
    stdout = _Terminal()
    run, _ = _run(client, stdout)
    client.arrive(b"red \x1b[31m caf\xc3")  # the \xc3\xa9 of an e-acute split across chunks
    assert stdout.getvalue() == b"red \\x1b[31m caf"
    client.arrive(b"\xa9 \x9b\n")
    client.finish()
    assert stdout.getvalue().decode() == "red \\x1b[31m caf\u00e9 \ufffd\n"
    assert run.result == 0
