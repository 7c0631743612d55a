"""
Interruption (issue 5): a signal in the middle of ``get --output-dir``, with
poems written, connections stalled, half-received and flooding, leaves only
whole poems, no temporary file, and exits at once without a traceback; a
signal stops a flooding ``serve`` cleanly.

``serve`` stopping on SIGINT/SIGTERM while idle or holding stalled
connections is tested in test_cli_serve.py.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from promptness import time_to_exit
from serve_process import WAIT, Running, cli, connect

from conftest import subprocess_env
from poetry_endpoints.cli.output import file_names

POEM = "A whole poem, written before the signal \u2014 caf\u00e9\n".encode()
#: From the signal to the exit of the process: interrupted means at once (issue 5).
#: The process's own time (promptness.py): not the time it waited for a busy CPU.
PROMPT = 1.0


def _wait_for(condition: object, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def _logged(server: Running, text: str) -> bool:
    return any(text in line for line in list(server.stderr_lines))


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[tuple[list[str], list[str], dict[str, Running]]]:
    """
    Sources for one run: two that finish (TCP, Unix), then one that stalls,
    one that sends half and hangs, and one that trickles forever.
    """
    poem = tmp_path / "poem.txt"
    poem.write_bytes(POEM)
    sockets = Path(tempfile.mkdtemp(prefix="poetry-int-"))
    loopback = "tcp:0:interface=127.0.0.1"
    with ExitStack() as stack:
        good = stack.enter_context(
            Running(cli("serve", "-l", loopback, "-l", f"unix:{sockets / 'p.sock'}", str(poem)))
        )
        faults = {
            mode: stack.enter_context(
                Running(cli("serve", "-l", loopback, "--fault", mode, *extra, str(poem)))
            )
            # A slow trickle: a download in progress, not a flood filling memory.
            for mode, extra in [
                ("stall", []),
                ("hang", []),
                ("endless", ["--delay", "0.01", "--num-bytes", "100"]),
            ]
        }
        finishing = good.sources(2)
        unfinished = [server.sources(1)[0] for server in faults.values()]
        yield finishing, unfinished, faults
        for server in [good, *faults.values()]:
            assert server.stop() == 0
    sockets.rmdir()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_keeps_whole_poems_only_and_exits_at_once(
    tmp_path: Path,
    sources: tuple[list[str], list[str], dict[str, Running]],
    signum: int,
    status: int,
) -> None:
    finishing, unfinished, faults = sources
    out = tmp_path / "poems"
    everything = [*finishing, *unfinished]
    names = file_names(everything)
    process = subprocess.Popen(
        cli("get", "--output-dir", str(out), "--idle-timeout", "0", *everything),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        # Visibly mid-run: the whole poems are written, every other connection accepted.
        _wait_for(
            lambda: all((out / name).exists() for name in names[: len(finishing)]),
            "writing the finished poems",
        )
        for mode, server in faults.items():
            _wait_for(lambda server=server, mode=mode: _logged(server, f"fault {mode}"), mode)
        assert process.poll() is None

        took = time_to_exit(process, WAIT, signum)
        out_bytes, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait(WAIT)

    assert process.returncode == status
    assert took.own < PROMPT, f"exited after the signal in {took}"
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err
    assert err == b"" and out_bytes == b""  # no failure lines for sources the user stopped
    # Exactly the whole poems, byte for byte; nothing partial, nothing temporary.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        name: POEM for name in names[: len(finishing)]
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_flooding_server_cleanly(signum: int) -> None:
    with Running(cli("serve", "-l", "tcp:0:interface=127.0.0.1", "--fault", "endless")) as server:
        (source,) = server.sources(1)
        with connect(source) as client:
            assert len(client.recv(65536)) > 0  # the flood has begun
            _wait_for(lambda: _logged(server, "fault endless"), "logging the connection")
            took = time_to_exit(server.process, WAIT, signum)
            assert server.wait() == 0
            # The flood ends with the server, with a reset: an endless poem is never
            # whole, so its end must not read as a clean end of stream.
            client.settimeout(WAIT)
            with pytest.raises(ConnectionResetError):
                while client.recv(1 << 20):
                    pass
    assert took.own < PROMPT, f"stopped after the signal in {took}"
    assert "Traceback" not in server.stderr and "KeyboardInterrupt" not in server.stderr
