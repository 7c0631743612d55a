"""
``poetry-endpoints get`` against real loopback servers.

Every option of ``get`` and every exit status; the servers are plain
sockets in threads of this process (tests/loopback_servers.py).  The
command runs in this process (tests/inprocess.py), as ``main(argv)`` on a
reactor of its own; what needs a process runs as one: the end-to-end check,
terminals, Ctrl-C, and a reader that goes away.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from inprocess import Ran, Running, run_cli
from loopback_servers import LoopbackServer, refused_port, servers
from terminal import read_pty, run_on_terminal

from conftest import subprocess_env
from poetry_endpoints.sources import ACCEPTED_FORMS

WAIT = 20.0
COMMAND = [sys.executable, "-m", "poetry_endpoints", "get"]


def get(*args: str, during: Callable[[Running], object] | None = None) -> Ran:
    """C{get ARGS} run in this process; C{during}, if given, runs alongside it in a thread."""
    return run_cli("get", *args, wait=WAIT, during=during)


def stderr_lines(result: Ran | subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def start(*args: str) -> subprocess.Popen[bytes]:
    """C{get ARGS} running, its stdout and stderr piped, no stdin."""
    return subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
    )


def read_until(fd: int, wanted: bytes, deadline: float) -> bytes:
    """Read from C{fd} until C{wanted} has appeared; fail if it does not by the deadline."""
    seen = read_pty(fd, deadline, until=wanted)
    assert wanted in seen, f"{wanted!r} did not appear; got {seen!r}"
    return seen


def test_every_poem_delivered_exits_0_with_nothing_on_stderr() -> None:
    """The end-to-end check of ``get``: the command as a process of its own."""
    with (
        LoopbackServer(b"first poem\n") as tcp,
        LoopbackServer("second, caf\u00e9\n".encode(), unix=True) as unix,
    ):
        result = subprocess.run(
            [*COMMAND, tcp.source, unix.source],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
            timeout=WAIT,
            check=False,
        )
    assert result.returncode == 0
    assert result.stdout == "first poem\nsecond, caf\u00e9\n".encode()
    assert result.stderr == b""


def test_argument_order_even_when_a_later_source_finishes_first() -> None:
    gate = threading.Event()
    with (
        LoopbackServer(b"slow, no newline", gate=gate) as slow,
        LoopbackServer(b"fast\n") as fast,
    ):

        def fast_first(_: Running) -> None:
            try:
                assert fast.finished.wait(WAIT)  # the fast poem is whole before the slow one
            finally:
                gate.set()

        result = get(slow.source, fast.source, during=fast_first)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"slow, no newline\nfast\n"  # argument order; a newline added


def test_as_completed_prints_each_poem_when_it_is_whole() -> None:
    gate = threading.Event()
    with (
        LoopbackServer(b"slow\n", gate=gate) as slow,
        LoopbackServer(b"fast\n") as fast,
    ):
        first: list[bytes] = []

        def watch(running: Running) -> None:
            # The fast poem appears while the slow one is still held back.
            try:
                deadline = time.monotonic() + WAIT
                while b"fast\n" not in running.stdout() and time.monotonic() < deadline:
                    time.sleep(0.01)
                first.append(running.stdout())
                assert b"fast\n" in first[0], f"b'fast\\n' did not appear; got {first[0]!r}"
            finally:
                gate.set()

        result = get("--as-completed", slow.source, fast.source, during=watch)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(first[0])
    assert result.stdout == b"fast\nslow\n"


def test_a_refused_port_among_good_sources_exits_1_and_keeps_the_good_poems() -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    with servers(b"one\n", b"two\n") as (one, two):
        result = get(one.source, refused, two.source)
    assert result.returncode == 1
    assert result.stdout == b"one\ntwo\n"
    assert stderr_lines(result) == [
        f"poetry-endpoints: {refused}: could not connect: connection refused [connect-failed]"
    ]


def test_json_lines_one_object_per_source_in_argument_order() -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    with LoopbackServer("caf\u00e9 \x1b[0m\n".encode()) as good:
        result = get("--json", refused, good.source)
    assert result.returncode == 1
    failed, delivered = (json.loads(line) for line in result.stdout.decode().splitlines())
    assert failed == {
        "source": refused,
        "ok": False,
        "kind": "connect-failed",
        "message": f"{refused}: could not connect: connection refused",
    }
    assert set(delivered) == {"source", "ok", "poem", "bytes", "elapsed"}
    assert delivered["source"] == good.source
    assert delivered["ok"] is True
    assert delivered["poem"] == "caf\u00e9 \x1b[0m\n"
    assert delivered["bytes"] == len("caf\u00e9 \x1b[0m\n".encode())
    assert isinstance(delivered["elapsed"], float) and delivered["elapsed"] >= 0
    assert len(stderr_lines(result)) == 1  # the failure line is still on stderr


def test_output_dir_one_safe_file_per_poem_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "poems"  # created on demand
    refused = f"tcp:127.0.0.1:{refused_port()}"
    with (
        LoopbackServer(b"tcp poem \x00\xff raw") as tcp,
        LoopbackServer(b"unix poem\n", unix=True) as unix,
    ):
        # A poem that does not decode is not delivered, so it gets no file.
        result = get(
            "--output-dir", str(out), "--errors", "replace", tcp.source, tcp.source, unix.source
        )
        failed = get("--output-dir", str(out), refused)
    assert result.returncode == 0, result.stderr
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    # The naming rule: each run of characters outside A-Za-z0-9._- becomes one "_".
    # (The temporary folder's own name can end in "_": that one stays.)
    tcp_name = tcp.source.replace(":", "_") + ".txt"
    unix_name = re.sub(r"[^A-Za-z0-9._-]+", "_", unix.source) + ".txt"
    assert files == {
        tcp_name: b"tcp poem \x00\xff raw",  # bytes exactly as received
        tcp_name.replace(".txt", "-2.txt"): b"tcp poem \x00\xff raw",
        unix_name: b"unix poem\n",
    }
    assert result.stdout == b""
    assert failed.returncode == 1
    assert len(list(out.iterdir())) == 3


def test_a_poem_that_does_not_decode_is_a_failure_unless_told_otherwise(tmp_path: Path) -> None:
    latin1 = "caf\u00e9\n".encode("latin-1")
    with LoopbackServer(latin1) as server:
        strict = get("--output-dir", str(tmp_path), server.source)
        as_latin1 = get("--encoding", "latin-1", "--json", server.source)
        replaced = get("--errors", "replace", "--json", server.source)
        piped = get("--errors", "replace", server.source)
    assert strict.returncode == 1
    assert stderr_lines(strict)[0].endswith("[decode]")
    assert list(tmp_path.iterdir()) == []
    assert json.loads(as_latin1.stdout)["poem"] == "caf\u00e9\n"
    assert json.loads(replaced.stdout)["poem"] == "caf\ufffd\n"
    assert piped.stdout == latin1  # bytes through a pipe unchanged


@pytest.mark.parametrize(("cap", "status"), [("2K", 0), ("2k", 0), ("2047", 1), ("1K", 1)])
def test_max_bytes_accepts_suffixes(cap: str, status: int) -> None:
    with LoopbackServer(b"x" * 2047 + b"\n") as server:
        result = get("--max-bytes", cap, server.source)
    assert result.returncode == status
    if status:
        assert result.stdout == b""
        assert stderr_lines(result)[0].endswith("[too-large]")
    else:
        assert len(result.stdout) == 2048


def test_an_incomplete_poem_is_never_printed_and_retries_reconnect() -> None:
    with LoopbackServer(b"half a po", ending="reset") as server:
        result = get("--retries", "2", server.source)
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr_lines(result)[0].endswith("[incomplete]")
    assert server.connections == 3


@pytest.mark.parametrize("option", ["--timeout", "-t", "--idle-timeout"])
def test_timeouts(option: str) -> None:
    with LoopbackServer(b"never ends", ending="stall") as server:
        result = get(option, "0.3", server.source)
        assert server.finished.wait(WAIT)  # the connection was aborted
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr_lines(result)[0].endswith("[timeout]")


def test_a_timed_out_connection_is_reset_before_the_run_ends() -> None:
    """A timeout's "connection aborted" is a reset the server sees, not a clean close at exit."""
    seen: list[bytes | OSError] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(WAIT)
                connection.sendall(b"never ends")
                try:
                    seen.append(connection.recv(10))
                except OSError as e:
                    seen.append(e)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        result = get("-t", "0.3", f"tcp:127.0.0.1:{listener.getsockname()[1]}")
        thread.join(WAIT)
    assert result.returncode == 1
    assert stderr_lines(result)[0].endswith("connection aborted [timeout]")
    assert len(seen) == 1 and isinstance(seen[0], ConnectionResetError), seen


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_concurrency_limits_connections_open_at_once(concurrency: str) -> None:
    gate = threading.Event()
    with (
        LoopbackServer(b"first\n", gate=gate) as first,
        LoopbackServer(b"second\n") as second,
    ):

        def open_the_gate(_: Running) -> None:
            try:
                assert first.connected.wait(WAIT)
                if concurrency == "2":
                    assert second.finished.wait(WAIT)  # both connected at once
            finally:
                gate.set()

        result = get("-c", concurrency, first.source, second.source, during=open_the_gate)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"first\nsecond\n"
    # With one slot, the second connection is made only after the first one closed.
    assert (second.accepted_at[0] > first.closing_at[0]) == (concurrency == "1")


def _connections_waiting(listener: socket.socket) -> int:
    listener.setblocking(False)
    waiting = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return waiting
        connection.close()
        waiting += 1


@pytest.mark.parametrize(
    "bad",
    [
        "tpc:localhost:10000",
        "tcp:localhost",
        "tcp:127.0.0.1:abc",
        "localhost:http",
        "70000",
        "",
        # Refused only when fetched, once (issue 14 item 6, issue 13).
        "http://a..b/",
        "http://user:secret@localhost/",
        "unix:/tmp/" + "x" * 200,
        "ftp://x/y",
    ],
)
def test_an_invalid_source_exits_2_before_anything_connects(bad: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        good = f"tcp:127.0.0.1:{listener.getsockname()[1]}"
        result = get(good, bad, "--json")
        # A connection attempt from the finished process would be queued by now.
        assert _connections_waiting(listener) == 0
    assert result.returncode == 2
    assert result.stdout == b""
    line, hint = stderr_lines(result)
    assert line.startswith(f"poetry-endpoints get: invalid source {bad}: ")
    assert "http(s)://URL" not in line
    assert hint == f"poetry-endpoints get: a SOURCE is {ACCEPTED_FORMS}"


def test_the_accepted_forms_are_shown_once_after_every_invalid_source() -> None:
    bad = ["ftp://x/y", "http://user:secret@localhost/", "tcp:a..b:80", "70000"]
    result = get(*bad)
    assert result.returncode == 2
    lines = stderr_lines(result)
    assert len(lines) == len(bad) + 1
    for text, line in zip(bad, lines, strict=False):
        assert line.startswith(f"poetry-endpoints get: invalid source {text}: "), line
    assert sum("http(s)://URL" in line for line in lines) == 1
    assert lines[-1] == f"poetry-endpoints get: a SOURCE is {ACCEPTED_FORMS}"


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "0"],
        ["--retries", "-1"],
        ["--errors", "ignore"],
        ["--max-bytes", "12X"],
        ["--max-bytes", "0"],
        ["-t", "-1"],
        ["--idle-timeout", "soon"],
        ["--encoding", "no-such-codec"],
        ["--cacert", "/nonexistent/ca.pem"],
        ["--json", "--output-dir", "somewhere"],
        ["--json", "-o", "somewhere"],
        ["-o", "-", "--output-dir", "somewhere"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = get(*args, *(["tcp:127.0.0.1:1"] if args else []))
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"Traceback" not in result.stderr


def test_an_unusable_output_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = get("--output-dir", str(blocker / "poems"), "tcp:127.0.0.1:1")
    assert result.returncode == 2
    # Worded as -o's are: the reason and its errno name, not Python's repr of the error.
    assert result.stderr.decode() == (
        f"poetry-endpoints get: cannot write to --output-dir {blocker / 'poems'}: "
        "not a directory (ENOTDIR)\n"
    )


HOSTILE = "title \x1b]0;owned\x07 red \x1b[31m csi \u009b2J del \x7f\ttab\n"


def test_a_terminal_stdout_gets_visible_escapes() -> None:
    with LoopbackServer(HOSTILE.encode()) as server:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [*COMMAND, server.source],
            stdout=terminal,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
        )
        os.close(terminal)
        try:
            shown = read_until(controller, b"tab", time.monotonic() + WAIT)
            _, err = process.communicate(timeout=WAIT)
        finally:
            process.kill()
            process.wait(WAIT)
            os.close(controller)
    assert process.returncode == 0, err
    assert b"title \\x1b]0;owned\\x07 red \\x1b[31m csi \\x9b2J del \\x7f\ttab" in shown
    assert b"\x1b" not in shown and b"\x07" not in shown and "\u009b".encode() not in shown


def test_a_piped_stdout_gets_the_bytes_unchanged() -> None:
    with LoopbackServer(HOSTILE.encode()) as server:
        result = get(server.source)
    assert result.returncode == 0
    assert result.stdout == HOSTILE.encode()


def _run_with_terminal_stderr(*args: str) -> tuple[int, bytes, bytes]:
    run = run_on_terminal(
        [*COMMAND, *args], terminal="stderr", env=subprocess_env(COLUMNS="100"), timeout=WAIT
    )
    return run.returncode, run.piped, run.shown


def test_a_terminal_stderr_shows_progress_and_a_summary_and_q_silences_them() -> None:
    with LoopbackServer(b"watched\n") as server:
        status, out, shown = _run_with_terminal_stderr(server.source)
        quiet_status, quiet_out, quiet_shown = _run_with_terminal_stderr("-q", server.source)
    assert status == quiet_status == 0
    assert out == quiet_out == b"watched\n"  # progress never reaches stdout
    assert server.source.encode() in shown  # a progress row names the source
    assert b"done" in shown
    assert re.search(rb"poetry-endpoints: 1 poem \(8 bytes\) in [0-9.]+ s\r\n$", shown)
    assert quiet_shown == b""


def test_ctrl_c_aborts_every_connection_exits_130_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    with (
        LoopbackServer(b"whole\n") as whole,
        LoopbackServer(b"never finishes", ending="stall") as stalled,
    ):
        process = start("--output-dir", str(tmp_path), whole.source, stalled.source)
        try:
            assert stalled.connected.wait(WAIT)  # visibly running
            deadline = time.monotonic() + WAIT
            while not list(tmp_path.glob("*.txt")) and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=WAIT)
            assert out == b""
            assert stalled.finished.wait(WAIT)  # its connection was aborted
        finally:
            process.kill()
            process.wait(WAIT)
    assert process.returncode == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert err == b""  # no failure lines for the sources the user interrupted
    # The finished poem stays; nothing partial or temporary is left.
    assert [p.name for p in tmp_path.iterdir()] == [whole.source.replace(":", "_") + ".txt"]


def test_a_closed_stdout_stops_quietly() -> None:
    with LoopbackServer(b"x" * 1_000_000) as big, LoopbackServer(b"more\n") as more:
        process = start(big.source, more.source)
        try:
            assert process.stdout is not None and process.stderr is not None
            process.stdout.read(10)
            process.stdout.close()  # the reader goes away, as `| head -c 10` does
            err = process.stderr.read()
            process.wait(WAIT)
        finally:
            process.kill()
            process.wait(WAIT)
    assert process.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_idle_timeout_0_means_no_limit() -> None:
    with LoopbackServer(b"patient\n") as server:
        result = get("--idle-timeout", "0", server.source)
    assert result.returncode == 0
    assert result.stdout == b"patient\n"


def test_ctrl_c_starts_no_queued_download() -> None:
    """Cancelling frees slots; a queued source must not connect on its way out."""
    with (
        LoopbackServer(b"never finishes", ending="stall") as stalled,
        LoopbackServer(b"queued\n") as queued,
    ):
        process = start("-c", "1", stalled.source, *[queued.source] * 5)
        try:
            assert stalled.connected.wait(WAIT)  # the one slot is taken
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=WAIT)
            assert stalled.finished.wait(WAIT)
        finally:
            process.kill()
            process.wait(WAIT)
    assert process.returncode == 130
    assert queued.connections == 0
