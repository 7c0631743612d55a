"""
The command line imports only what a command needs.

Every run of ``poetry-endpoints`` pays for what it imports before it does
anything (a shell loop of ``get``, every CLI test of this suite).  treq (and
the HTTP fetcher) is loaded for the first http(s) source, rich for the first
progress display, twisted.web's server for ``serve --http`` and the
demo, importlib.metadata when the version is asked for.  One real process per
check, its imports read from ``python -X importtime``, so that a top-level
import added anywhere cannot quietly bring them back.  The time itself is
measured by ``benchmarks/run.py`` (its start-up section), not here.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading

from conftest import subprocess_env

POEM = b"A poem for the start-up check,\nloaded with nothing it does not need.\n"

#: Neither a plain tcp: get nor --version may load these (or their submodules).
NOT_FOR_TCP_OR_VERSION = (
    "treq",
    "rich",
    "twisted.web.server",
    "twisted.web.resource",
    "poetry_endpoints.http",
    "poetry_endpoints.servers.web",
)

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$")


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """Run ``python -X importtime -m poetry_endpoints ARGS``: the result, every module imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "poetry_endpoints", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=60,
    )
    modules = set()
    other = []
    for line in done.stderr.decode("utf-8", "replace").splitlines():
        match = _IMPORTED.match(line)
        if match:
            modules.add(match[1])
        elif not line.startswith("import time: self"):
            other.append(line)
    assert not other, other  # nothing on stderr but the import times
    return done, modules


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules of C{modules} that are one of C{names} or inside one."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def serve_one_poem(listener: socket.socket) -> None:
    """Accept one connection, send the poem, close; bounded by the listener's timeout."""
    try:
        connection, _ = listener.accept()
    except OSError:  # timed out, or closed by the test
        return
    with connection:
        connection.sendall(POEM)


def test_a_tcp_get_loads_no_http_web_server_progress_or_metadata() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(60)
        server = threading.Thread(target=serve_one_poem, args=(listener,), daemon=True)
        server.start()
        port = listener.getsockname()[1]
        done, modules = imported_by("get", "-q", f"tcp:127.0.0.1:{port}")
        server.join(timeout=10)
    assert done.returncode == 0
    assert done.stdout == POEM
    # The imports were read: the client and the reactor are among them.
    assert {"poetry_endpoints.client", "twisted.internet.reactor"} <= modules
    assert loaded(modules, (*NOT_FOR_TCP_OR_VERSION, "importlib.metadata")) == []


def test_the_version_loads_no_reactor_http_web_server_or_progress() -> None:
    done, modules = imported_by("--version")
    assert done.returncode == 0
    assert done.stdout.decode().startswith("poetry-endpoints ")
    assert "importlib.metadata" in modules  # where the version is read from
    assert loaded(modules, (*NOT_FOR_TCP_OR_VERSION, "twisted.internet.reactor")) == []
