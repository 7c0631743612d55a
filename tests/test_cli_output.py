"""
``get``'s output conventions: ``-o FILE``, ``-o -``, ``--output-dir DIR``,
``-i FILE`` and ``-v``.

The command runs in this process (tests/inprocess.py), Ctrl-C in a
subprocess; the servers are plain sockets in threads of this process
(tests/loopback_servers.py), written without project code.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from inprocess import Ran, run_cli
from loopback_servers import LoopbackServer, refused_port

from conftest import subprocess_env

WAIT = 20.0
COMMAND = [sys.executable, "-m", "poetry_endpoints", "get"]


def get(*args: str, stdin: bytes = b"") -> Ran:
    """C{get ARGS} run in this process, C{stdin} its standard input."""
    return run_cli("get", *args, stdin=stdin, wait=WAIT)


def lines(result: Ran) -> list[str]:
    return result.stderr.decode().splitlines()


# -o FILE


def test_output_file_gets_the_poem_bytes_exactly_and_nothing_else(tmp_path: Path) -> None:
    poem = b"raw \x00\xff bytes, no newline"
    target = tmp_path / "poem.txt"
    with LoopbackServer(poem) as server:
        result = get("-o", str(target), "--errors", "replace", server.source)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and result.stderr == b""
    assert target.read_bytes() == poem  # not a folder, not a newline added
    assert [p.name for p in tmp_path.iterdir()] == ["poem.txt"]


def test_output_file_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "poem.txt"
    target.write_bytes(b"old poem, longer than the new one\n")
    with LoopbackServer(b"new\n") as server:
        result = get("-o", str(target), server.source)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == b"new\n"


def test_output_file_of_a_failed_poem_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "poem.txt"
    with LoopbackServer(b"cut short", ending="reset") as server:
        result = get("-o", str(target), server.source)
    assert result.returncode == 1
    assert lines(result)[-1].endswith("[incomplete]")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_at_the_output_name_is_replaced_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious"
    precious.write_bytes(b"keep me\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "poem.txt").symlink_to(precious)
    with LoopbackServer(b"hostile poem\n") as server:
        result = get("-o", str(work / "poem.txt"), server.source)
    assert result.returncode == 0, result.stderr
    assert precious.read_bytes() == b"keep me\n"
    assert not (work / "poem.txt").is_symlink()
    assert (work / "poem.txt").read_bytes() == b"hostile poem\n"


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "poem.txt", "tcp:127.0.0.1:1", "tcp:127.0.0.1:2"],
        ["-o", "-", "tcp:127.0.0.1:1", "tcp:127.0.0.1:2"],
        ["-o", "poem.txt", "--output-dir", "poems", "tcp:127.0.0.1:1"],
        ["-o", "no-such-folder/poem.txt", "tcp:127.0.0.1:1"],
        ["-o", ".", "tcp:127.0.0.1:1"],
    ],
)
def test_output_usage_errors_exit_2_and_write_nothing(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative names are in the empty folder
    result = get(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    assert b"Traceback" not in result.stderr
    assert len(lines(result)) >= 1
    assert list(tmp_path.iterdir()) == []


def test_o_with_two_sources_says_to_use_output_dir(tmp_path: Path) -> None:
    result = get("-o", str(tmp_path / "poem.txt"), "tcp:127.0.0.1:1", "tcp:127.0.0.1:2")
    assert result.returncode == 2
    assert lines(result) == [
        "poetry-endpoints get: -o takes one SOURCE, not 2: for more, use --output-dir"
    ]


# -i FILE


def test_input_file_skips_blank_lines_and_comments_and_keeps_order(tmp_path: Path) -> None:
    with LoopbackServer(b"first\n") as first, LoopbackServer(b"second\n") as second:
        listing = tmp_path / "sources.txt"
        listing.write_bytes(
            f"# my poems\n\n  {second.source}  \r\n   # indented comment\n\t\n".encode()
        )
        result = get(first.source, "-i", str(listing))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"first\nsecond\n"  # the command line's first, then the file's


def test_input_from_stdin(tmp_path: Path) -> None:
    with LoopbackServer(b"first\n") as first, LoopbackServer(b"second\n") as second:
        result = get("-i", "-", stdin=f"{first.source}\n{second.source}".encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"first\nsecond\n"


def test_an_invalid_line_is_named_by_its_number_and_nothing_connects(tmp_path: Path) -> None:
    with LoopbackServer(b"never fetched\n") as server:
        listing = tmp_path / "sources.txt"
        listing.write_text(f"# comment\n{server.source}\n\ntcp:localhost\n")
        result = get("-i", str(listing))
        connections = server.connections
    assert result.returncode == 2
    assert result.stdout == b""
    assert connections == 0
    first = lines(result)[0]
    assert first.startswith(f"poetry-endpoints get: {listing}:4: invalid source tcp:localhost")


def test_an_invalid_line_from_stdin_is_named_stdin() -> None:
    result = get("-i", "-", stdin=b"\n\nnot a source at all\n")
    assert result.returncode == 2
    assert lines(result)[0].startswith("poetry-endpoints get: stdin:3: invalid source ")


@pytest.mark.parametrize("content", [None, b"", b"# only a comment\n\n"])
def test_no_source_at_all_is_a_usage_error(tmp_path: Path, content: bytes | None) -> None:
    listing = tmp_path / "sources.txt"
    if content is not None:
        listing.write_bytes(content)
    result = get("-i", str(listing))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    if content is None:
        assert lines(result) == [
            f"poetry-endpoints get: cannot read --input {listing}: no such file or directory"
        ]
    else:
        assert lines(result) == [
            "poetry-endpoints get: no SOURCE given, on the command line or with -i FILE"
        ]


def test_an_endless_line_is_refused_without_reading_it_all() -> None:
    result = get("-i", "/dev/zero")
    assert result.returncode == 2
    assert lines(result) == ["poetry-endpoints get: /dev/zero:1: line longer than 65536 bytes"]


def test_a_refused_source_from_a_file_fails_like_any_other(tmp_path: Path) -> None:
    listing = tmp_path / "sources.txt"
    refused = f"tcp:127.0.0.1:{refused_port()}"
    listing.write_text(refused + "\n")
    result = get("-i", str(listing))
    assert result.returncode == 1
    assert lines(result)[0].startswith(f"poetry-endpoints: {refused}: ")
    assert os.path.exists(listing)


def test_ctrl_c_in_the_middle_of_o_file_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "poem.txt"
    with LoopbackServer(b"the first lines of a poem that never ends\n", ending="stall") as server:
        process = subprocess.Popen(
            [*COMMAND, "--idle-timeout", "0", "-o", str(target), server.source],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        try:
            assert server.connected.wait(WAIT)  # visibly running
            time.sleep(0.3)  # mid-poem: the bytes sent are on their way to the file
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=WAIT)
            assert server.finished.wait(WAIT)  # its connection was aborted
        finally:
            process.kill()
            process.wait(WAIT)
    assert process.returncode == 130
    assert out == b"" and err == b""
    assert list(tmp_path.iterdir()) == []  # no poem, no temporary file


# -v


VERBOSE = re.compile(r"poetry-endpoints: \+(\d+\.\d{3})s (\S+): (.*)")


def _verbose(result: Ran) -> list[tuple[float, str, str]]:
    found = [VERBOSE.fullmatch(line) for line in lines(result)]
    return [(float(m[1]), m[2], m[3]) for m in found if m]


def test_verbose_shows_each_attempt_failure_and_retry_in_time_order() -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    result = get("-v", "--retries", "1", refused)
    assert result.returncode == 1
    steps = _verbose(result)
    assert [(source, what.split(":")[0]) for _, source, what in steps] == [
        (refused, "attempt 1"),
        (refused, "attempt 1 failed"),
        (refused, "retrying in 0.5s (attempt 2)"),
        (refused, "attempt 2"),
        (refused, "attempt 2 failed"),
    ]
    assert steps[1][2].endswith("[connect-failed]")
    times = [when for when, _, _ in steps]
    assert times == sorted(times)
    assert times[3] - times[2] >= 0.4  # the backoff, seen in the times
    # The usual failure line still ends the run.
    assert lines(result)[-1].startswith(f"poetry-endpoints: {refused}: ")
    assert lines(result)[-1].endswith("[connect-failed]")


def test_verbose_shows_a_redirect_and_nothing_without_v() -> None:
    with _Redirecting() as server:
        url = f"http://127.0.0.1:{server.port}/old"
        verbose = get("-v", url)
        quiet = get(url)
    assert verbose.returncode == quiet.returncode == 0, verbose.stderr
    assert verbose.stdout == quiet.stdout == b"moved poem\n"
    assert quiet.stderr == b""
    assert [what for _, _, what in _verbose(verbose)] == [
        "attempt 1",
        f"redirect 301 to http://127.0.0.1:{server.port}/new",
    ]


class _Redirecting:
    """An HTTP server on loopback: ``/old`` redirects to ``/new``, which is a poem."""

    def __enter__(self) -> _Redirecting:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/old":
                    self.send_response(301)
                    self.send_header("Location", "/new")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"moved poem\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


# A file from an HTTP source is checked with the charset its server declares.

LATIN_1 = "Ça, c'est un poème.\n".encode("latin-1")  # valid latin-1, not UTF-8
CHARSETS = {"/latin-1": b"latin-1", "/utf-8": b"utf-8", "/none": None, "/punycode": b"punycode"}


class _DeclaringServer:
    """
    Raw sockets in a thread: each request for a path of L{CHARSETS} gets
    L{LATIN_1}, declared in that charset (``/none``: no charset), then a
    clean close.
    """

    def __enter__(self) -> _DeclaringServer:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        deadline = time.monotonic() + WAIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(WAIT)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    piece = connection.recv(4096)
                    if not piece:
                        break
                    request += piece
                path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else ""
                charset = CHARSETS.get(path)
                content_type = b"text/plain" + (b"; charset=" + charset if charset else b"")
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: "
                    + content_type
                    + b"\r\nContent-Length: %d\r\n\r\n" % len(LATIN_1)
                    + LATIN_1
                )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.listener.close()


def test_output_file_keeps_a_poem_only_if_it_decodes_in_the_declared_charset(
    tmp_path: Path,
) -> None:
    kept, refused = tmp_path / "kept.txt", tmp_path / "refused.txt"
    with _DeclaringServer() as server:
        good = get("-o", str(kept), server.url("/latin-1"))
        bad = get("-o", str(refused), server.url("/utf-8"))
    assert good.returncode == 0, good.stderr
    assert kept.read_bytes() == LATIN_1
    assert bad.returncode == 1
    (line,) = lines(bad)
    assert line.endswith("[decode]") and "not valid utf-8" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


def test_output_dir_checks_each_poem_with_its_declared_charset(tmp_path: Path) -> None:
    out = tmp_path / "poems"
    with _DeclaringServer() as server:
        result = get("--output-dir", str(out), *(server.url(path) for path in CHARSETS))
    assert result.returncode == 1
    failures = [line for line in lines(result) if line.endswith("[decode]")]
    assert len(failures) == 3, lines(result)
    assert any("charset 'punycode'" in line for line in failures), failures
    (only,) = out.iterdir()  # the latin-1 poem, nothing else, no temporary
    assert only.read_bytes() == LATIN_1
    assert "latin-1" in only.name
