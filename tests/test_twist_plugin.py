"""
``twist poetry`` and ``twist poetry-proxy``: the IServiceMaker plugins, found
from the installed package and run as ``python -m twisted`` subprocesses (one
end-to-end run each, and the exit after a listener fails, which ends the
process); the usage errors run Twisted's ``Twist.main`` in this process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import tomllib
from inprocess_serve import twist_here
from serve_process import WAIT, Running, fetch, twist
from server_thread import ServerThread

from conftest import subprocess_env
from poetry_endpoints.servers.poetry import bundled_poems

ROOT = Path(__file__).parent.parent


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=subprocess_env(), timeout=WAIT, cwd=cwd
    )


def test_python_m_twisted_is_the_twist_command() -> None:
    (script,) = entry_points(group="console_scripts", name="twist")
    assert script.value == "twisted.application.twist._twist:Twist.main"
    main = (Path(__import__("twisted").__file__).parent / "__main__.py").read_text()
    assert "Twist.main()" in main


def test_plugins_are_found_from_the_installed_package(tmp_path: Path) -> None:
    # Run from an empty directory, so that the checkout is not what finds them.
    probe = (
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "import twisted.plugins.poetry_endpoints_plugin as p\n"
        "print(p.__file__)\n"
        "for m in getPlugins(IServiceMaker):\n"
        "    if m.tapname.startswith('poetry'):\n"
        "        print(m.tapname, m.options.__name__)\n"
    )
    result = _run([sys.executable, "-c", probe], tmp_path)
    assert result.returncode == 0, result.stderr
    location, *makers = result.stdout.splitlines()
    assert sorted(makers) == ["poetry Options", "poetry-proxy Options"]
    # Installed beside Twisted's own plugins (an editable install finds it in the checkout).
    assert Path(location).parent.name == "plugins"
    # Twisted's plugin directory is shared by every project: our copy must not
    # claim it as a package of ours, and the packaging must ship it.
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "twisted.plugins" in setuptools["packages"]["find"]["include"]


def test_twist_poetry_serves_tcp_and_unix_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The end-to-end check of ``twist poetry``."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes("first — ü\n".encode())
    second.write_bytes(b"second\n")
    sock = tmp_path / "p.sock"
    argv = twist(
        "poetry",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        f"unix:{sock}",
        "--delay",
        "0.001",
        "--num-bytes",
        "3",
        str(first),
        str(second),
    )
    with Running(argv, cwd=tmp_path) as server:
        tcp, unix = server.sources(2)
        assert tcp.startswith("tcp:127.0.0.1:") and unix == f"unix:{sock}"
        assert [fetch(tcp), fetch(unix), fetch(tcp)] == [
            first.read_bytes(),
            second.read_bytes(),
            first.read_bytes(),
        ]
        status = server.stop(signal.SIGTERM)
    # twist ends itself with the signal it received, as a daemon should.
    assert status in (0, -signal.SIGTERM)
    output = "\n".join(server.stdout_lines) + server.stderr
    assert "Traceback" not in output
    assert output.count("sending ") == 3


def test_twist_poetry_proxy_in_front_of_twist_poetry(tmp_path: Path) -> None:
    """The end-to-end check of ``twist poetry-proxy``, in front of the poetry server's services."""
    with ServerThread() as server:
        (upstream,) = server.serve("-l", "tcp:0:interface=127.0.0.1")
        proxy_argv = twist(
            "poetry-proxy",
            "--upstream",
            upstream,
            "--cache-seconds",
            "60",
            "-l",
            "tcp:0:interface=127.0.0.1",
        )
        with Running(proxy_argv, cwd=tmp_path) as proxy:
            (source,) = proxy.sources(1)
            poems = [fetch(source) for _ in range(3)]
            proxy.stop()
    assert poems == [bundled_poems()[0].data] * 3
    sent = [line for line in server.stderr.splitlines() if "sending" in line]
    assert len(sent) == 1, "served from the cache"


def test_twist_usage_errors_are_one_line_and_exit_64(tmp_path: Path) -> None:
    for args, message in [
        (["poetry", "--listen", "tcp:abc"], "--listen: invalid listen endpoint 'tcp:abc'"),
        (["poetry", str(tmp_path / "missing.txt")], "POEM_FILE: cannot read"),
        (["poetry", "--fault", "nope"], "--fault: unknown fault 'nope'"),
        (["poetry-proxy"], "--upstream SOURCE is required"),
        (["poetry-proxy", "--upstream", "tcp:nohost"], "--upstream: invalid upstream"),
        (["poetry-proxy", "-u", "tcp:127.0.0.1:1", "--cacert", "/nonexistent"], "--cacert: "),
    ]:
        status, output = twist_here(*args)
        assert status == 64, (args, output)
        assert f"Error: {message}" in output, (args, output)
        assert "Traceback" not in output


@pytest.mark.parametrize("plugin", [["poetry"], ["poetry-proxy", "-u", "tcp:127.0.0.1:1"]])
def test_twist_exits_1_when_it_cannot_listen_after_stopping_the_rest(
    tmp_path: Path, plugin: list[str]
) -> None:
    import socket

    sock = tmp_path / "first.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = twist(*plugin, "-l", f"unix:{sock}", "-l", f"tcp:{port}:interface=127.0.0.1")
        result = _run(argv, tmp_path)
    # A supervisor sees a failure, as with `twist web` on a port in use.
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"could not listen on tcp:{port}:interface=127.0.0.1" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    # The listener that did start was stopped cleanly: its socket file is gone.
    assert f"listening on unix:{sock}" in result.stdout
    assert not sock.exists()
