"""
The command line imports only what a command needs.

Every run of ``poetry-endpoints`` pays for what it imports before it does
anything (a shell loop of ``get``, every CLI test of this suite).  treq (the
HTTP fetcher) and hyperlink are loaded for the first http(s) source, rich for
the first progress display, a subcommand's module only when it is the one
run, twisted.web's server for ``serve --http`` and the demo, and
importlib.metadata when the version is asked for.  One real process per
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

import pytest

from conftest import subprocess_env
from poetry_endpoints.cli import COMMANDS, build_parser

POEM = b"A poem for the start-up check,\nloaded with nothing it does not need.\n"

#: Neither a plain tcp: get nor --version may load these (or their submodules).
NOT_FOR_TCP_OR_VERSION = (
    "treq",
    "hyperlink",
    "rich",
    "twisted.web.server",
    "twisted.web.resource",
    "poetry_endpoints.http",
    "poetry_endpoints.servers",
    "poetry_endpoints.cli.serve",
    "poetry_endpoints.cli.proxy",
    "poetry_endpoints.cli.demo",
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
    not_for_version = ("twisted.internet.reactor", "poetry_endpoints.cli.get")
    assert loaded(modules, (*NOT_FOR_TCP_OR_VERSION, *not_for_version)) == []


# A run builds its parser with only its own subcommand's options (the others
# listed by name and summary): what it shows and parses must be what the
# parser with every subcommand's options does.


def help_text(argv: list[str], load: list[str] | None, capsys: pytest.CaptureFixture[str]) -> str:
    parser = build_parser() if load is None else build_parser(load=load)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_top_level_help_lists_each_subcommand_as_its_own_parser_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = help_text(["--help"], [], capsys)
    assert listed == help_text(["--help"], None, capsys)
    for name, summary in COMMANDS.items():
        assert f"{name}" in listed and summary in listed


#: The fewest arguments each subcommand parses.
MINIMAL = {"get": [], "serve": [], "demo": [], "proxy": ["-u", "tcp:127.0.0.1:10000"]}


def test_every_subcommand_has_a_minimal_command_line_here() -> None:
    assert set(MINIMAL) == set(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_subcommand_alone_has_the_help_and_options_of_the_whole_parser(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert help_text([name, "--help"], [name], capsys) == help_text([name, "--help"], None, capsys)
    argv = [name, *MINIMAL[name]]
    alone = vars(build_parser(load=[name]).parse_args(argv))
    assert alone == vars(build_parser().parse_args(argv))
    assert alone["command"] == name
