"""
``poetry-endpoints serve`` on loopback.

The server prints ``listening on SOURCE`` lines that these tests read to find
it, then fetch from it with plain sockets.  Most runs are in this process
(`inprocess.serve_cli`: the command in the main thread, stopped by a real
signal); a real subprocess where the process is the point: the end-to-end
check, and the signals (Python's own SIGINT handling, a SIGINT ignored from
the start).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from inprocess import Ran, Running, run_cli
from inprocess_serve import Serving, begin_logging, serve_cli
from serve_process import WAIT, cli, connect, fetch
from serve_process import Running as RunningProcess
from server_thread import ServerThread

from poetry_endpoints.servers.poetry import bundled_poems

LOOPBACK = "tcp:0:interface=127.0.0.1"


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "KeyboardInterrupt" not in text, text


def test_tcp_and_unix_listeners_serve_the_bundled_poems_in_turn(tmp_path: Path) -> None:
    """The end-to-end check of ``serve``: the command as a process, stopped by SIGTERM."""
    sock = tmp_path / "poetry.sock"
    with RunningProcess(cli("serve", "-l", LOOPBACK, "--listen", f"unix:{sock}")) as server:
        tcp, unix = server.sources(2)
        assert tcp.startswith("tcp:127.0.0.1:") and int(tcp.rsplit(":", 1)[1]) > 0
        assert unix == f"unix:{sock}"
        # One factory behind both listeners: the turns go on across them.
        received = [fetch(tcp), fetch(unix), fetch(tcp)]
        status = server.stop(signal.SIGTERM)
    poems = [poem.data for poem in bundled_poems()]
    assert received == poems[:3]
    assert status == 0
    _no_traceback(server.stderr)
    # Each connection is logged on stderr; stdout has only the listening lines.
    assert sum("sending" in line for line in server.stderr_lines) == 3, server.stderr
    assert server.stdout_lines == [f"listening on {tcp}", f"listening on {unix}"]
    assert not sock.exists(), "the Unix socket is removed on a clean stop"


def test_several_files_are_served_in_turn(tmp_path: Path) -> None:
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_bytes("Première strophe — é\n".encode())
    second.write_bytes(b"second\nwithout a final newline")

    def client(server: Serving) -> list[bytes]:
        (source,) = server.sources(1)
        received = [fetch(source) for _ in range(4)]
        server.stop(signal.SIGINT)
        return received

    ran, received = serve_cli("serve", "-l", LOOPBACK, str(first), str(second), client=client)
    assert ran.returncode == 0
    assert received == [first.read_bytes(), second.read_bytes()] * 2
    assert any("first" in line for line in _stderr(ran).splitlines())


def test_slow_mode_delivers_the_whole_poem(tmp_path: Path) -> None:
    # The write sizes are checked deterministically in test_server.py.
    poem = tmp_path / "slow.txt"
    poem.write_bytes(b"0123456789" * 5)

    def client(server: Serving) -> bytes:
        (source,) = server.sources(1)
        received = fetch(source)
        server.stop()
        return received

    argv = ("serve", "-l", LOOPBACK, "--delay", "0.001", "--num-bytes", "7", str(poem))
    ran, received = serve_cli(*argv, client=client)
    assert received == poem.read_bytes()
    assert ran.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_with_exit_0(signum: int) -> None:
    with RunningProcess(cli("serve", "-l", LOOPBACK)) as server:
        (source,) = server.sources(1)
        assert fetch(source)
        assert server.stop(signum) == 0
    _no_traceback(server.stderr)


def test_sigint_stops_a_server_started_in_the_background_with_sigint_ignored() -> None:
    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with RunningProcess(cli("serve", "-l", LOOPBACK), preexec_fn=ignore_sigint) as server:
        server.sources(1)
        assert server.stop(signal.SIGINT) == 0
    _no_traceback(server.stderr)


def test_connections_still_open_do_not_hold_up_the_stop() -> None:
    def client(server: Serving) -> tuple[str, bytes | OSError]:
        (source,) = server.sources(1)
        with connect(source) as sock:
            sock.settimeout(WAIT)
            # The server logs the connection before we ask it to stop.
            logged = server.wait_for_stderr("fault stall")
            server.stop(signal.SIGTERM)
            try:
                return logged, sock.recv(10)
            except OSError as e:
                return logged, e

    ran, (logged, after_stop) = serve_cli(
        "serve", "-l", LOOPBACK, "--fault", "stall", client=client
    )
    assert "stall" in logged
    assert ran.returncode == 0
    # Reset on the way out, not closed cleanly: an empty poem is not whole.
    assert isinstance(after_stop, ConnectionResetError), after_stop
    assert "resetting 1 connection(s) whose poem is unfinished" in _stderr(ran)
    _no_traceback(_stderr(ran))


def _slow_poem(tmp_path: Path) -> Path:
    poem = tmp_path / "slow.txt"
    poem.write_bytes(b"a line of a long, slow poem\n" * 100)
    return poem


def test_a_get_client_mid_poem_when_serve_stops_reports_it_incomplete(tmp_path: Path) -> None:
    """The stop (the services' stop, as ``serve`` does on a signal) resets a poem half sent."""
    poem = _slow_poem(tmp_path)
    with ServerThread() as server:
        (source,) = server.serve("-l", LOOPBACK, "--delay", "0.01", "--num-bytes", "10", str(poem))

        def stop_mid_poem(running: Running) -> None:
            # The poem takes 3 s to send: 10 bytes every 0.01 s.
            deadline = time.monotonic() + WAIT
            while "sending slow" not in server.stderr and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)
            server.close()

        ran = run_cli("get", source, during=stop_mid_poem)
        logged = server.stderr
    assert "sending slow" in logged
    assert ran.returncode == 1, ran
    assert ran.stdout == b""  # an incomplete poem is never printed
    assert ran.stderr.decode().splitlines()[0].endswith("[incomplete]"), ran.stderr
    assert "resetting 1 connection(s) whose poem is unfinished" in logged


def test_a_poem_all_sent_before_the_stop_keeps_its_clean_close() -> None:
    def client(server: Serving) -> tuple[bytes, bytes]:
        (source,) = server.sources(1)
        with connect(source) as sock:
            sock.settimeout(WAIT)
            server.wait_for_stderr("sending")
            # Not read yet: the poem waits in the kernel, the connection is closed.
            first = sock.recv(1)
            server.stop(signal.SIGTERM)
            return first, _read_to_end(sock)

    ran, (first, rest) = serve_cli("serve", "-l", LOOPBACK, client=client)
    assert ran.returncode == 0
    assert first + rest == bundled_poems()[0].data
    assert "resetting" not in _stderr(ran)


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _stderr(ran: Ran) -> str:
    return ran.stderr.decode("utf-8", "replace")


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_listener_is_announced_as_the_bracketed_shorthand() -> None:

    def client(server: Serving) -> tuple[str, bytes]:
        (source,) = server.sources(1)
        received = fetch(source)
        server.stop()
        return source, received

    ran, (source, received) = serve_cli("serve", "-l", "tcp6:0:interface=\\:\\:1", client=client)
    assert source.startswith("[::1]:")
    assert received == bundled_poems()[0].data
    assert ran.returncode == 0


class _Result:
    """A run's status and text output, as the subprocess checks read them."""

    def __init__(self, ran: Ran) -> None:
        self.returncode = ran.returncode
        self.stdout = ran.stdout.decode()
        self.stderr = _stderr(ran)


def _run(*args: str) -> _Result:
    begin_logging()  # a serve that fails to listen has begun to log
    return _Result(run_cli(*args))


@pytest.mark.parametrize(
    "description", ["tcp:abc", "tpc:10000", "tcp", "unix:", "tcp:0:bogus=1", ""]
)
def test_a_bad_listen_description_exits_2_with_one_line(description: str) -> None:
    result = _run("serve", "--listen", description)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "invalid listen endpoint" in lines[0] and repr(description) in lines[0]


def test_an_unreadable_poem_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = _run("serve", "-l", LOOPBACK, str(missing))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"poetry-endpoints serve: error: argument POEM_FILE: cannot read '{missing}': "
        "No such file or directory (see --help)"
    ]
    folder = _run("serve", "-l", LOOPBACK, str(tmp_path))
    assert folder.returncode == 2 and str(tmp_path) in folder.stderr
    assert len(folder.stderr.splitlines()) == 1


def test_a_port_in_use_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("serve", "-l", f"tcp:{port}:interface=127.0.0.1")
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(port) in errors[0], result.stderr
    _no_traceback(result.stderr)


@pytest.mark.parametrize("args", [["--delay", "-1"], ["--num-bytes", "0"], ["--fault", "nonsense"]])
def test_bad_settings_are_usage_errors(args: list[str]) -> None:
    result = _run("serve", *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("poetry-endpoints serve: error: ") and args[0] in line


def test_http_listener_serves_poems_over_http() -> None:
    pytest.importorskip("poetry_endpoints.servers.web")

    def client(server: Serving) -> tuple[bytes, str, bytes]:
        poetry, http = server.sources(2)
        poem = fetch(poetry)
        host, port = http[len("http://") : -1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        server.stop()
        return poem, http, response

    ran, (poem, http, response) = serve_cli(
        "serve", "-l", LOOPBACK, "--http", LOOPBACK, client=client
    )
    assert poem == bundled_poems()[0].data
    assert http.startswith("http://127.0.0.1:") and http.endswith("/")
    assert ran.returncode == 0
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert body in [poem.data for poem in bundled_poems()]


def _http_exchange(url: str, request: bytes) -> bytes:
    host, port = url[len("http://") : -1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def _headers(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")[1:]
    return {
        name.strip().lower(): value.strip() for name, _, value in (h.partition(b":") for h in lines)
    }


@pytest.mark.parametrize("path", ["/", "/poems/haiku", "/poems/", "/nothing"])
def test_head_answers_the_get_headers_without_a_body_or_a_warning(path: str) -> None:
    pytest.importorskip("poetry_endpoints.servers.web")

    def client(server: Serving) -> tuple[bytes, bytes]:
        _, url = server.sources(2)
        ask = f"{{}} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".format
        head = _http_exchange(url, ask("HEAD").encode())
        got = _http_exchange(url, ask("GET").encode())
        server.stop()
        return head, got

    ran, (head, got) = serve_cli("serve", "-l", LOOPBACK, "--http", LOOPBACK, client=client)
    assert ran.returncode == 0
    head_headers, _, head_body = head.partition(b"\r\n\r\n")
    get_headers, _, get_body = got.partition(b"\r\n\r\n")
    assert head_body == b""
    assert get_body, got
    # The status line and every header but the date are the GET's, length included.
    assert head_headers.split(b"\r\n")[0] == get_headers.split(b"\r\n")[0]
    expected = _headers(get_headers)
    assert expected[b"content-length"] == b"%d" % len(get_body)
    actual = _headers(head_headers)
    for headers in (expected, actual):
        headers.pop(b"date", None)
    assert actual == expected
    stderr = _stderr(ran)
    assert "Warning" not in stderr and "eat it" not in stderr, stderr


def test_help_names_every_option() -> None:
    result = _run("serve", "--help")
    assert result.returncode == 0
    for option in ("--listen", "--delay", "--num-bytes", "--http", "--fault", "POEM_FILE"):
        assert option in result.stdout


def test_each_run_in_one_process_logs_to_its_own_stream_until_it_ends() -> None:
    # serve/proxy log through log_to; Twisted's logging begins once per process.
    from typing import cast

    from twisted.logger import ILogObserver, LogEvent, Logger

    from poetry_endpoints.cli.serve import log_to

    begin_logging()
    first: list[LogEvent] = []
    second: list[LogEvent] = []
    log = Logger()
    stop_first = log_to(cast(ILogObserver, first.append))
    log.info("one")
    stop_first()
    stop_second = log_to(cast(ILogObserver, second.append))
    log.info("two")
    stop_second()
    log.info("three")
    assert [event["log_format"] for event in first] == ["one"]
    assert [event["log_format"] for event in second] == ["two"]
