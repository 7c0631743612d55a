"""
Hostile servers and bad input against ``poetry-endpoints get`` (issue 5).

One run mixes good servers (``serve`` over TCP and a Unix socket) with every
``serve --fault`` mode (their services in a thread of this process:
``tests/server_thread.py``), a refused port, a missing Unix socket and a name that
does not resolve (the test network guard fails it without a DNS query).  For
each source it checks the kind and a message naming the source, that good
poems arrive byte for byte, the exit status, that the run ends within the
configured timeouts plus a margin, and that nothing prints a traceback.

The client's peak memory is its own high-water mark (``VmHWM``), which the
child reads as it exits (``tests/peak_memory.py``), so "the endless server
cannot fill the client's memory" is measured, not assumed, and does not depend
on what the test process held before.  The runs that measure no memory (and
need no terminal) run ``get`` in this process (``tests/inprocess.py``).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from inprocess import run_cli
from loopback_servers import refused_port
from peak_memory import measured_cli, read_peak
from raw_http import RawHTTPServer, responding
from server_thread import ServerThread
from terminal import read_pty
from twisted.internet import error
from twisted.python.failure import Failure

from conftest import run_main, subprocess_env
from poetry_endpoints.http import INFLATE_STEP
from poetry_endpoints.reasons import connect_error
from poetry_endpoints.servers.faults import FAULTS, with_escapes

WAIT = 30.0
#: The limits every run here is given; the bound on a run's wall time follows from them.
TIMEOUT = 3.0
LIMITS = ["--timeout", f"{TIMEOUT:g}", "--idle-timeout", "1", "--max-bytes", "64K"]
#: Generous: this bounds hanging (a run stuck on a server that never ends), not speed.
MARGIN = 10.0
MIB = 1024 * 1024

TCP_POEM = "Good poem over TCP, caf\u00e9 \u2014 \u00fcber alles\nsecond line\n".encode()
UNIX_POEM = "Good poem over a Unix socket, with no final newline: \u00e6\u00f8\u00e5".encode()
FAULT_POEM = b"The poem a faulty server mangles,\nline two,\nline three.\n"
NOWHERE = "poetry-nowhere.invalid:10000"

#: What each fault mode must come to: a failure kind, or the exact bytes of a poem.
FAULT_OUTCOMES: dict[str, str | bytes] = {
    "stall": "timeout",
    "hang": "timeout",
    "reset": "incomplete",
    "endless": "too-large",
    "bad-utf8": "decode",
    "escapes": with_escapes(FAULT_POEM),
    "empty": b"",
}

FAILURE_LINE = re.compile(
    r"poetry-endpoints: (?P<source>\S+): (?P<reason>.+) \[(?P<kind>[a-z-]+)\]"
)


def test_every_fault_mode_is_covered() -> None:
    assert set(FAULT_OUTCOMES) == set(FAULTS)


@dataclass
class Outcome:
    """A finished CLI run, with its wall time and the peak resident memory of the process."""

    status: int
    stdout: bytes
    stderr: bytes
    elapsed: float
    max_rss: int  # bytes


def run_get(*args: str, stdout: int | IO[bytes] | None = None, timeout: float = WAIT) -> Outcome:
    """
    Run ``get ARGS`` to the end and measure it.

    The process reports its own peak memory as it exits (L{measured_cli}).
    Its output goes to temporary files (a pipe nobody reads would block it).
    With C{stdout} given (a pty), stdout goes there instead and is returned empty.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="poetry-peak-") as folder,
    ):
        report = Path(folder) / "peak"
        started = time.monotonic()
        process = subprocess.Popen(
            measured_cli(report, "get", *args),
            stdin=subprocess.DEVNULL,
            stdout=out if stdout is None else stdout,
            stderr=err,
            env=subprocess_env(),
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)
            raise AssertionError(f"get {args} did not finish within {timeout} s") from None
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Outcome(
            status=process.returncode,
            stdout=out.read(),
            stderr=err.read(),
            elapsed=elapsed,
            max_rss=read_peak(report),
        )


def get_here(*args: str) -> Outcome:
    """
    Run ``get ARGS`` in this process (L{run_cli}) and time it; the peak
    memory is not measured (C{max_rss} is -1): the runs that check it are
    subprocesses (L{run_get}).
    """
    started = time.monotonic()
    ran = run_cli("get", *args, wait=WAIT)
    elapsed = time.monotonic() - started
    return Outcome(ran.returncode, ran.stdout, ran.stderr, elapsed, max_rss=-1)


def assert_no_traceback(outcome: Outcome) -> None:
    assert b"Traceback" not in outcome.stderr, outcome.stderr.decode()


@dataclass
class Servers:
    """The sources of one mixed run, in argument order, and what each must give."""

    expected: dict[str, str | bytes]  # source -> failure kind, or the poem's bytes
    by_fault: dict[str, str]  # fault mode -> its source
    tcp: str
    unix: str

    @property
    def sources(self) -> list[str]:
        return list(self.expected)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    where = tmp_path_factory.mktemp("adversarial")
    # Unix socket paths are limited to ~100 bytes; pytest's temporary paths can be longer.
    sockets = Path(tempfile.mkdtemp(prefix="poetry-adv-"))
    files = {}
    for name, data in [("tcp", TCP_POEM), ("unix", UNIX_POEM), ("fault", FAULT_POEM)]:
        files[name] = where / f"{name}.txt"
        files[name].write_bytes(data)
    loopback = "tcp:0:interface=127.0.0.1"
    # What nine ``serve`` processes served: their services, on one reactor in a thread.
    with ServerThread() as server:
        (tcp,) = server.serve("-l", loopback, str(files["tcp"]))
        (unix,) = server.serve("-l", f"unix:{sockets / 'good.sock'}", str(files["unix"]))
        by_fault = {
            mode: server.serve("-l", loopback, "--fault", mode, str(files["fault"]))[0]
            for mode in FAULT_OUTCOMES
        }
        expected: dict[str, str | bytes] = {tcp: TCP_POEM}
        for mode, source in by_fault.items():
            expected[source] = FAULT_OUTCOMES[mode]
        expected[f"tcp:127.0.0.1:{refused_port()}"] = "connect-failed"
        expected[unix] = UNIX_POEM
        expected[f"unix:{sockets / 'missing.sock'}"] = "connect-failed"
        expected[NOWHERE] = "connect-failed"
        yield Servers(expected, by_fault, tcp, unix)
    # Closing stopped every service without an error; nothing logged a traceback.
    assert "Traceback" not in server.stderr, server.stderr
    os.rmdir(sockets)


def test_mixed_run_as_json_lines(servers: Servers) -> None:
    outcome = get_here("--json", *LIMITS, *servers.sources)

    assert outcome.status == 1
    assert outcome.elapsed < TIMEOUT + MARGIN, "the run outlived its timeouts"
    assert_no_traceback(outcome)
    records = [json.loads(line) for line in outcome.stdout.decode().splitlines()]
    assert [r["source"] for r in records] == servers.sources  # one each, in argument order
    for record in records:
        wanted = servers.expected[record["source"]]
        if isinstance(wanted, bytes):
            assert record["ok"] is True, record
            assert record["poem"] == wanted.decode()
            assert record["bytes"] == len(wanted)
        else:
            assert record == {
                "source": record["source"],
                "ok": False,
                "kind": wanted,
                "message": record["message"],
            }
            assert record["message"].startswith(f"{record['source']}: "), record
            assert "\n" not in record["message"]
    # The failures are on stderr as well, one line each, in argument order.
    failed = [s for s, wanted in servers.expected.items() if isinstance(wanted, str)]
    lines = outcome.stderr.decode().splitlines()
    assert [FAILURE_LINE.fullmatch(line) is not None for line in lines] == [True] * len(failed)
    assert [(m["source"], m["kind"]) for m in map(FAILURE_LINE.fullmatch, lines) if m] == [
        (source, servers.expected[source]) for source in failed
    ]


def test_mixed_run_as_text_delivers_the_bytes_as_served(servers: Servers) -> None:
    outcome = get_here(*LIMITS, *servers.sources)

    assert outcome.status == 1
    assert outcome.elapsed < TIMEOUT + MARGIN
    assert_no_traceback(outcome)
    # On a pipe every good poem is the exact bytes served, escapes included,
    # with a newline added where one is missing, in argument order.
    poems = [wanted for wanted in servers.expected.values() if isinstance(wanted, bytes)]
    assert outcome.stdout == b"".join(p if p.endswith(b"\n") else p + b"\n" for p in poems)
    assert with_escapes(FAULT_POEM) in outcome.stdout
    kinds = [FAILURE_LINE.fullmatch(line) for line in outcome.stderr.decode().splitlines()]
    assert [(m["source"], m["kind"]) if m else None for m in kinds] == [
        (s, wanted) for s, wanted in servers.expected.items() if isinstance(wanted, str)
    ]


def test_the_failure_reasons_say_what_happened(servers: Servers) -> None:
    faults = servers.by_fault
    outcome = get_here(
        "--json",
        *LIMITS,
        faults["stall"],
        faults["hang"],
        faults["reset"],
        faults["endless"],
        faults["bad-utf8"],
        NOWHERE,
    )
    assert outcome.status == 1
    messages = [json.loads(line)["message"] for line in outcome.stdout.decode().splitlines()]
    stall, hang, reset, endless, bad_utf8, nowhere = messages
    assert "no data for 1 s" in stall and "after 0 bytes" in stall
    assert "no data for 1 s" in hang and f"after {len(FAULT_POEM) // 2} bytes" in hang
    assert "incomplete" in reset
    assert "65536" in endless and "aborted" in endless
    assert "utf-8" in bad_utf8
    assert "did not resolve" in nowhere


def test_escapes_reach_a_terminal_only_as_visible_text(servers: Servers) -> None:
    controller, terminal = pty.openpty()
    shown: list[bytes] = []
    # Read while it runs: a pty's buffer is small, and a full one would block the writer.
    reader = threading.Thread(
        target=lambda: shown.append(read_pty(controller, time.monotonic() + WAIT)), daemon=True
    )
    reader.start()
    try:
        try:
            outcome = run_get(*LIMITS, servers.by_fault["escapes"], stdout=terminal)
        finally:
            os.close(terminal)
        reader.join(WAIT)
    finally:
        os.close(controller)
    assert outcome.status == 0, outcome.stderr
    assert_no_traceback(outcome)
    text = b"".join(shown).replace(b"\r\n", b"\n")
    assert b"\\x1b]0;pwned\\x07\\x1b[2J\\x1b[H\\x1b[31mThe poem a faulty server mangles," in text
    assert b"\\x9b2J\\x7f\\x0dgotcha\\x07\\x1b[0m" in text
    # Not one control byte but the line ends went to the terminal.
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]", text), text


def test_the_endless_server_cannot_fill_the_clients_memory(servers: Servers) -> None:
    # No time limit at all: only the cap (the default 16M) can end this run.
    baseline = run_get("--idle-timeout", "0", servers.tcp)
    endless = run_get("--idle-timeout", "0", "--json", servers.by_fault["endless"])

    assert baseline.status == 0 and baseline.stdout == TCP_POEM
    assert endless.status == 1
    assert_no_traceback(endless)
    assert json.loads(endless.stdout)["kind"] == "too-large"
    # The cap is 16 MiB: the poem so far, and a copy while it is joined, at most.
    assert endless.max_rss < baseline.max_rss + 48 * MIB, (endless.max_rss, baseline.max_rss)


def _gzip_bomb(size: int) -> bytes:
    """A gzip member of C{size} zero bytes (whole MiBs) in about size/1000 bytes."""
    zeros = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # After a full flush the compressor starts afresh, so every MiB packs the same.
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + block * (size // MIB) + packer.flush() + trailer


def get_one_http_response(response: bytes, *, measured: bool = True) -> Outcome:
    """
    C{get --json} of a URL whose server answers with the raw C{response}: a
    subprocess whose peak memory is measured, or with C{measured=False} a run
    in this process.
    """
    server = RawHTTPServer(responding(response), wait=WAIT)
    try:
        return (run_get if measured else get_here)("--json", *LIMITS, server.url)
    finally:
        server.close()


def _gzip_response(body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    return head + body


def test_a_gzip_bomb_is_too_large_after_one_read_inflates() -> None:
    small = get_one_http_response(_gzip_response(gzip.compress(b"a small poem\n")))
    outcome = get_one_http_response(_gzip_response(_gzip_bomb(1024 * MIB)))
    assert small.status == 0, small.stderr
    assert outcome.status == 1
    assert_no_traceback(outcome)
    assert json.loads(outcome.stdout)["kind"] == "too-large"
    # The body is inflated at most INFLATE_STEP (256 KiB) at a time, so the
    # 64 KiB cap stops the gibibyte after its first step.  Beyond what any
    # small gzip poem costs, the bomb may hold the poem so far (the cap), one
    # step and one compressed read: under 1 MiB by design (0.3 to 0.4 MiB
    # measured).  The 8 MiB allow for the allocator, and stay far below the
    # 64 MiB that one 64 KiB read of zeros cost when it was inflated whole.
    assert INFLATE_STEP + 64 * 1024 < 1 * MIB
    assert outcome.max_rss < small.max_rss + 8 * MIB, (outcome.max_rss, small.max_rss)


@pytest.mark.parametrize(
    "bad",
    [
        ["tpc:localhost:10000"],
        ["tcp:localhost", "tcp:127.0.0.1:abc", "localhost:http"],
        ["70000", "", "unix:"],
    ],
)
def test_malformed_sources_exit_2_and_nothing_connects(
    servers: Servers, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # In process: every source is checked before the reactor runs.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        good = f"tcp:127.0.0.1:{listener.getsockname()[1]}"
        argv = ["get", "--json", *LIMITS, good, *bad, servers.by_fault["stall"], servers.tcp]
        status, out, err = run_main(argv, capsys)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever knocked
            listener.accept()
    assert status == 2
    assert out == ""
    assert "Traceback" not in err
    check_malformed_lines(bad, err)


def test_malformed_sources_exit_2_from_the_process(servers: Servers) -> None:
    bad = ["tpc:localhost:10000", "unix:"]
    with socket.create_server(("127.0.0.1", 0)) as listener:
        good = f"tcp:127.0.0.1:{listener.getsockname()[1]}"
        outcome = run_get("--json", *LIMITS, good, *bad, servers.by_fault["stall"], servers.tcp)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever knocked
            listener.accept()
    assert outcome.status == 2
    assert outcome.stdout == b""
    assert_no_traceback(outcome)
    check_malformed_lines(bad, outcome.stderr.decode())


def check_malformed_lines(bad: list[str], stderr: str) -> None:
    *lines, hint = stderr.splitlines()
    assert len(lines) == len(bad)
    for text, line in zip(bad, lines, strict=True):
        assert line.startswith(f"poetry-endpoints get: invalid source {text}: "), line
    assert hint.startswith("poetry-endpoints get: a SOURCE is http(s)://URL")


def test_a_reset_seen_while_connecting_is_incomplete_not_connect_failed() -> None:
    # Across processes the reset fault's RST can arrive before the client's
    # reactor sees the connection made: Twisted then reports a ConnectError
    # with ECONNRESET.  The server had accepted, so nothing was refused.
    failure = Failure(error.getConnectError(OSError(errno.ECONNRESET, "Connection reset by peer")))
    lost = connect_error("tcp:127.0.0.1:1", failure)
    assert lost.kind == "incomplete"
    assert str(lost) == (
        "tcp:127.0.0.1:1: connection lost after 0 bytes (connection reset by peer); poem incomplete"
    )
    refused = Failure(error.getConnectError(OSError(errno.ECONNREFUSED, "Connection refused")))
    assert connect_error("tcp:127.0.0.1:1", refused).kind == "connect-failed"


@pytest.mark.parametrize(
    ("charset", "body"),
    [("undefined", b"any poem\n"), ("punycode", b"abc-99999999999"), ("uu_codec", b"x\n")],
)
def test_a_charset_chosen_to_break_the_decoder_is_a_decode_failure(
    charset: str, body: bytes
) -> None:
    # Codecs that raise UnicodeError (not UnicodeDecodeError), or are not text codecs.
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=%s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (charset.encode(), len(body))
    )
    outcome = get_one_http_response(head + body, measured=False)
    assert outcome.status == 1
    assert_no_traceback(outcome)
    record = json.loads(outcome.stdout)
    assert record["kind"] == "decode", record
    assert charset in record["message"]


class _HeaderFlood(RawHTTPServer):
    """Answers with a status line, then header lines for ever."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        super().__init__(self._flood, wait=WAIT)

    def _flood(self, connection: socket.socket) -> None:
        """The status line, then header lines until the test stops it."""
        lines = (b"X-Flood: " + b"y" * 1000 + b"\r\n") * 64
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        while not self.stop.is_set():
            connection.sendall(lines)

    def close(self) -> None:
        self.stop.set()
        super().close()


def test_endless_response_headers_are_too_large_not_a_memory_leak() -> None:
    # The cap is on the body; Twisted's client sets no limit on the head.
    server = _HeaderFlood()
    try:
        outcome = run_get("--json", "--idle-timeout", "5", server.url)
    finally:
        server.close()
    assert outcome.status == 1
    assert_no_traceback(outcome)
    record = json.loads(outcome.stdout)
    assert record["kind"] == "too-large", record
    assert "headers" in record["message"]
    # Unchecked, the flood grew the client by about 300 MiB a second.
    assert outcome.max_rss < 150 * MIB, outcome.max_rss


def test_memory_checks_pass_after_the_test_process_grew() -> None:
    # The 64 MiB poem is fetched inside the test process and raises its peak
    # to a few hundred MB.  A client started afterwards is still measured on
    # its own, so the memory check after it passes: in this order the old
    # measurement (the peak inherited across fork and exec) failed it.
    root = Path(__file__).resolve().parent.parent
    first = "tests/test_loopback.py::LoopbackTests::test_64_mib_poem"
    then = (
        "tests/test_adversarial.py::test_endless_response_headers_are_too_large_not_a_memory_leak"
    )
    done = subprocess.run(
        # -n 0: in one process, in this order, whatever addopts says about workers.
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-n", "0", first, then],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ran = [line.split(" ")[0] for line in done.stdout.splitlines() if " PASSED" in line]
    assert ran == [first, then], done.stdout
