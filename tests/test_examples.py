"""The scripts in examples/ run, as a user would run them, and print poems."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_servers import LoopbackServer, refused_port
from promptness import time_to_exit

from conftest import subprocess_env
from poetry_endpoints.servers.poetry import bundled_poems

EXAMPLES = Path(__file__).parent.parent / "examples"
POEMS = {poem.name: poem.data.decode("utf-8") for poem in bundled_poems()}


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    (result,) = run_examples([*args])
    return result


def run_examples(*runs: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run each C{[script, *args]} at the same time, as separate programs; their results."""
    started = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / run[0]), *run[1:]],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            stdin=subprocess.DEVNULL,
        )
        for run in runs
    ]
    deadline = time.monotonic() + 60
    results = []
    try:
        for process in started:
            out, err = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    return results


@pytest.mark.parametrize(
    ("script", "poem_names"),
    [
        ("deferred_style.py", ["cafe", "endpoints"]),
        ("async_style.py", ["haiku", "loopback"]),
        ("asyncio_embedding.py", ["reactor"]),
    ],
)
def test_self_contained_examples_print_their_poems(script: str, poem_names: list[str]) -> None:
    result = run_example(script)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in poem_names:
        assert POEMS[name].strip() in result.stdout


def test_examples_report_a_refused_source_by_name() -> None:
    port = refused_port()
    scripts = ("deferred_style.py", "async_style.py", "asyncio_embedding.py")
    results = run_examples(*([script, f"tcp:127.0.0.1:{port}"] for script in scripts))
    for script, result in zip(scripts, results, strict=True):
        assert f"tcp:127.0.0.1:{port}: could not connect" in result.stderr, script
        assert "[connect-failed]" in result.stderr
        assert "Traceback" not in result.stderr


def test_asyncio_example_really_runs_on_the_asyncio_reactor() -> None:
    code = (
        "import runpy, sys\n"
        f"ns = runpy.run_path({str(EXAMPLES / 'asyncio_embedding.py')!r})\n"
        "assert ns['main']([]) == 0\n"
        "from twisted.internet import reactor\n"
        "from twisted.internet.asyncioreactor import AsyncioSelectorReactor\n"
        "print(isinstance(reactor, AsyncioSelectorReactor), reactor.running)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True False"


class HTTPPoemServer:
    """A plain-socket HTTP/1.1 server in a thread: reads each request head, answers one poem."""

    def __init__(self, poem: bytes) -> None:
        self.response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(poem) + poem
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(10)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = connection.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    connection.sendall(self.response)
                    connection.shutdown(socket.SHUT_WR)
                    while connection.recv(4096):  # until the client closes: no RST
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        # Closing alone does not wake a thread blocked in accept(); shutting it down does.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the HTTP server thread did not end"


def test_asyncio_example_fetches_every_kind_of_source() -> None:
    """Host names and http:// need the reactor's thread pool, so the reactor must be running."""
    names = ["cafe", "endpoints", "haiku", "loopback"]
    tcp, named, unix = (
        LoopbackServer(POEMS[names[0]].encode()),
        LoopbackServer(POEMS[names[1]].encode()),
        LoopbackServer(POEMS[names[2]].encode(), unix=True),
    )
    http = HTTPPoemServer(POEMS[names[3]].encode())
    try:
        sources = [tcp.source, f"localhost:{named.port}", unix.source, http.url]
        result = run_example("asyncio_embedding.py", *sources)
    finally:
        for server in (tcp, named, unix, http):
            server.close()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for source, name in zip(sources, names, strict=True):
        assert f"--- {source}\n{POEMS[name].strip()}" in result.stdout


def signal_mid_fetch(signum: int) -> tuple[int, float, str]:
    """Run the asyncio example on a host-name source whose poem never ends; signal it once
    connected.  Returns its exit status, the seconds it took to end, and its stderr."""
    with LoopbackServer(POEMS["haiku"].encode(), ending="stall") as server:
        example = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "asyncio_embedding.py"), f"localhost:{server.port}"],
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As from a terminal: a background shell would start it with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # Mid-fetch: the name was looked up (the thread pool runs), the
            # connection is open, and the poem never ends.
            assert server.connected.wait(30), "the example never connected"
            # Its own time: not the wait for a CPU another test worker holds.
            took = time_to_exit(example, 10, signum).own
        finally:
            if example.poll() is None:
                example.kill()
            _, stderr = example.communicate(timeout=10)
    return example.returncode, took, stderr


def test_asyncio_example_ends_at_once_on_sigterm_mid_fetch() -> None:
    status, took, stderr = signal_mid_fetch(signal.SIGTERM)
    assert status == -signal.SIGTERM, stderr
    assert took < 2.0, f"{took:.2f} s to end after SIGTERM"


def test_asyncio_example_ends_at_once_on_ctrl_c_mid_fetch() -> None:
    status, took, stderr = signal_mid_fetch(signal.SIGINT)
    assert status == 130, stderr
    assert stderr == ""
    assert took < 2.0, f"{took:.2f} s to end after SIGINT"


@pytest.fixture
def unix_poem_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A plain Unix-socket server (no reactor in the test process) that sends one poem per
    connection and closes."""
    poem = "Configured, not coded:\nthe source is a string —\nchange it, and listen.\n".encode()
    path = tmp_path / "poetry.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    server.settimeout(30)

    def serve() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.sendall(poem)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix:{path}", poem
    server.close()
    thread.join(5)


def test_service_reads_its_upstream_from_configuration(
    tmp_path: Path, unix_poem_server: tuple[str, bytes]
) -> None:
    source, poem = unix_poem_server
    config = tmp_path / "poetry.ini"
    config.write_text(f"[poetry]\nsource = {source}\ninterval = 5\ntimeout = 10\n")
    result = run_example("service_from_config.py", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert result.stdout == poem.decode()
