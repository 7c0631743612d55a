"""
``poetry-endpoints serve`` as a real subprocess on loopback.

The server prints ``listening on SOURCE`` lines that these tests read to find
it, then fetch from it with plain sockets.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest
from serve_process import WAIT, Running, cli, connect, fetch

from conftest import subprocess_env
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
    sock = tmp_path / "poetry.sock"
    with Running(cli("serve", "-l", LOOPBACK, "--listen", f"unix:{sock}")) as server:
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
    with Running(cli("serve", "-l", LOOPBACK, str(first), str(second))) as server:
        (source,) = server.sources(1)
        received = [fetch(source) for _ in range(4)]
        assert server.stop(signal.SIGINT) == 0
    assert received == [first.read_bytes(), second.read_bytes()] * 2
    assert any("first" in line for line in server.stderr_lines)


def test_slow_mode_delivers_the_whole_poem(tmp_path: Path) -> None:
    # The write sizes are checked deterministically in test_server.py.
    poem = tmp_path / "slow.txt"
    poem.write_bytes(b"0123456789" * 5)
    with Running(
        cli("serve", "-l", LOOPBACK, "--delay", "0.001", "--num-bytes", "7", str(poem))
    ) as server:
        (source,) = server.sources(1)
        assert fetch(source) == poem.read_bytes()
        assert server.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_with_exit_0(signum: int) -> None:
    with Running(cli("serve", "-l", LOOPBACK)) as server:
        (source,) = server.sources(1)
        assert fetch(source)
        assert server.stop(signum) == 0
    _no_traceback(server.stderr)


def test_sigint_stops_a_server_started_in_the_background_with_sigint_ignored() -> None:
    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with Running(cli("serve", "-l", LOOPBACK), preexec_fn=ignore_sigint) as server:
        server.sources(1)
        assert server.stop(signal.SIGINT) == 0
    _no_traceback(server.stderr)


def test_connections_still_open_do_not_hold_up_the_stop() -> None:
    with Running(cli("serve", "-l", LOOPBACK, "--fault", "stall")) as server:
        (source,) = server.sources(1)
        with connect(source) as sock:
            sock.settimeout(WAIT)
            # The server logs the connection before we ask it to stop.
            assert "stall" in _wait_for_stderr(server, "fault stall")
            assert server.stop(signal.SIGTERM) == 0
            assert sock.recv(10) == b""  # the reactor closed it on the way out
    _no_traceback(server.stderr)


def _wait_for_stderr(server: Running, text: str) -> str:
    import time

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in server.stderr_lines:
            if text in line:
                return line
        time.sleep(0.01)
    raise AssertionError(f"{text!r} never logged; stderr: {server.stderr}")


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_listener_is_announced_as_the_bracketed_shorthand() -> None:
    with Running(cli("serve", "-l", "tcp6:0:interface=\\:\\:1")) as server:
        (source,) = server.sources(1)
        assert source.startswith("[::1]:")
        assert fetch(source) == bundled_poems()[0].data
        assert server.stop() == 0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args), capture_output=True, text=True, env=subprocess_env(), timeout=WAIT
    )


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
    with Running(cli("serve", "-l", LOOPBACK, "--http", LOOPBACK)) as server:
        poetry, http = server.sources(2)
        assert fetch(poetry) == bundled_poems()[0].data
        assert http.startswith("http://127.0.0.1:") and http.endswith("/")
        host, port = http[len("http://") : -1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert server.stop() == 0
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
    with Running(cli("serve", "-l", LOOPBACK, "--http", LOOPBACK)) as server:
        _, url = server.sources(2)
        ask = f"{{}} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".format
        head = _http_exchange(url, ask("HEAD").encode())
        got = _http_exchange(url, ask("GET").encode())
        assert server.stop() == 0
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
    assert "Warning" not in server.stderr and "eat it" not in server.stderr, server.stderr


def test_help_names_every_option() -> None:
    result = _run("serve", "--help")
    assert result.returncode == 0
    for option in ("--listen", "--delay", "--num-bytes", "--http", "--fault", "POEM_FILE"):
        assert option in result.stdout
