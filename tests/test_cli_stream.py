"""
``get -o -`` and ``get -o FILE`` stream, against raw socket servers in
threads (no project code on the server side).

The command runs in this process (tests/inprocess.py) unless the check needs
a process: a reader that goes away, a memory peak, a terminal.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from inprocess import run_cli
from peak_memory import measured_cli, read_peak
from terminal import run_on_terminal

from conftest import subprocess_env

WAIT = 30.0
MIB = 1024 * 1024
COMMAND = [sys.executable, "-m", "poetry_endpoints", "get"]


class Sender:
    """
    A poetry server in a thread, for one connection: C{chunks} pieces of
    C{chunk} bytes, C{pause} seconds apart, then a clean close.
    """

    def __init__(self, chunk: bytes, chunks: int, pause: float = 0.0) -> None:
        self.chunk = chunk
        self.chunks = chunks
        self.pause = pause
        #: time.monotonic() of the first send; set when the last piece is sent.
        self.first_sent: float | None = None
        self.all_sent = threading.Event()
        self.ended = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.source = f"tcp:127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            try:
                for _ in range(self.chunks):
                    if self.first_sent is None:
                        self.first_sent = time.monotonic()
                    connection.sendall(self.chunk)
                    if self.pause:
                        time.sleep(self.pause)
                self.all_sent.set()
            except OSError:
                pass  # the client went away
            finally:
                self.ended.set()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(WAIT)


def test_o_dash_reaches_head_before_the_poem_ends() -> None:
    # 50 pieces of 10 bytes, 0.1 s apart: 5 s for the whole poem.
    with Sender(b"0123456789", 50, pause=0.1) as server:
        get = subprocess.Popen(
            [*COMMAND, "-o", "-", server.source],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        try:
            assert get.stdout is not None
            head = subprocess.run(
                ["head", "-c", "20"], stdin=get.stdout, capture_output=True, timeout=WAIT
            )
            got_it = time.monotonic()
            get.stdout.close()  # only head reads it
            assert head.stdout == b"01234567890123456789"
            assert not server.all_sent.is_set()  # the bytes came before the poem ended
            assert server.first_sent is not None
            assert got_it - server.first_sent < 2.0  # two pieces, not the whole poem
            # The reader went away: the next piece ends the run quietly.
            err = get.communicate(timeout=WAIT)[1]
            assert server.ended.wait(WAIT)
        finally:
            get.kill()
            get.wait(WAIT)
    assert get.returncode == 1
    assert b"Traceback" not in err
    assert err == b""


def test_o_dash_keeps_bytes_a_failed_poem_sent_and_says_so() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        connection.sendall(b"x" * 1234)
        time.sleep(0.2)
        # RST: the poem is cut short.
        connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = run_cli("get", "-o", "-", f"tcp:127.0.0.1:{port}", wait=WAIT)
    finally:
        thread.join(WAIT)
        listener.close()
    assert result.returncode == 1
    assert result.stdout == b"x" * 1234
    line = result.stderr.decode().splitlines()[-1]
    assert line.startswith(f"poetry-endpoints: tcp:127.0.0.1:{port}: ")
    assert line.endswith(", after 1,234 bytes were written to stdout [incomplete]")


def test_o_file_of_a_1_gib_poem_runs_in_flat_memory(tmp_path: Path) -> None:
    target = tmp_path / "big.txt"
    report = tmp_path / "peak"
    with Sender(b"x" * (MIB - 1) + b"\n", 1024) as server:
        started = time.monotonic()
        result = subprocess.run(
            measured_cli(
                report, "get", "-q", "--max-bytes", "2G", "-o", str(target), server.source
            ),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
            timeout=WAIT * 2,
            check=False,
        )
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    size = target.stat().st_size
    target.unlink()  # a gigabyte is not left for the rest of the run
    assert size == 1024 * MIB
    assert [p.name for p in tmp_path.iterdir()] == ["peak"]
    peak = read_peak(report)
    print(f"1 GiB to -o FILE: peak {peak / MIB:.1f} MiB in {took:.1f} s")
    # Whole, it would be at least 1 GiB (and about 2 before streaming).
    assert peak < 150 * MIB, peak / MIB


def test_o_file_stops_at_the_first_piece_that_does_not_decode(tmp_path: Path) -> None:
    target = tmp_path / "poem.txt"
    # Not UTF-8 from the first piece on; the whole poem would take 5 s.
    with Sender(b"caf\xe9 au lait\n", 50, pause=0.1) as server:
        started = time.monotonic()
        result = run_cli("get", "-o", str(target), server.source, wait=WAIT)
        took = time.monotonic() - started
        assert server.ended.wait(WAIT)
        assert not server.all_sent.is_set()  # cut short: the check ran as it streamed
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1].endswith("[decode]")
    assert took < 4.0
    assert list(tmp_path.iterdir()) == []  # neither the poem nor a temporary file


def test_o_dash_on_a_terminal_shows_controls_as_text_and_raw_bytes_to_a_pipe() -> None:
    hostile = b"title \x1b]0;owned\x07 red \x1b[31m csi \xc2\x9b2J\n"
    with Sender(hostile, 1) as on_terminal, Sender(hostile, 1) as to_pipe:
        run = run_on_terminal(
            [*COMMAND, "-o", "-", on_terminal.source],
            terminal="stdout",
            env=subprocess_env(),
            timeout=WAIT,
        )
        piped = run_cli("get", "-o", "-", to_pipe.source, wait=WAIT)
    assert run.returncode == 0 and piped.returncode == 0
    assert b"\x1b" not in run.shown and b"\x07" not in run.shown and b"\xc2\x9b" not in run.shown
    assert b"title \\x1b]0;owned\\x07 red \\x1b[31m csi \\x9b2J" in run.shown
    assert piped.stdout == hostile  # a pipe gets the bytes exactly
