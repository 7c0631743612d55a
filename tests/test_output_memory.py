"""
Memory of ``get`` in argument order when one source stalls in front of many.

Finished poems wait for the stalled one before them, so without a bound they
all pile up in memory (300 x 1.9 MiB behind a 20 s stall at ``-c 10`` peaked at
1,455 MiB).  At most ``concurrency`` sources are started and not yet printed,
which keeps memory near ``concurrency x max-bytes`` whatever the order.

The CLI runs in a tiny wrapper that writes the process's own peak resident
memory (``VmHWM``) to a file when it ends; the numbers are scaled down.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from io import BytesIO, StringIO
from pathlib import Path

import pytest
from loopback_servers import LoopbackServer
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from conftest import subprocess_env
from poetry_endpoints.cli.fetch import Fetch, Presentation, Streams
from poetry_endpoints.cli.runner import Interruption
from poetry_endpoints.errors import PoetryError
from poetry_endpoints.poem import Poem
from poetry_endpoints.sources import HTTPSource

WAIT = 60.0
MIB = 1024 * 1024
CONCURRENCY = 4
POEMS = 60
POEM = b"x" * (900 * 1024) + b"\n"
#: How long the first source stalls at most: long enough for every other
#: download to finish while it waits, if nothing holds them back.
STALL = 3.0
#: The stall also ends once the bulk server has had no new connection for this
#: long after serving one: the client is holding the rest back.  Without the
#: bound, the client starts the next download in the same turn of its reactor
#: as one ends (milliseconds), so a quiet half second is the bound at work, not a
#: slow client; and already 7 of the 59 poems held would fail the check below.
QUIET = 0.5

#: Runs ``main`` with argv[2:], then writes VmHWM (kB) to the file argv[1].
MEASURED = (
    "import sys\n"
    "from poetry_endpoints.cli import main\n"
    "report = sys.argv.pop(1)\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    with open('/proc/self/status') as status:\n"
    "        peak = next(l for l in status if l.startswith('VmHWM:')).split()[1]\n"
    "    with open(report, 'w') as out:\n"
    "        out.write(peak)\n"
)


def peak_of_get(tmp_path: Path, *args: str) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """Run ``get ARGS``; its own peak resident memory in bytes, and the run."""
    report = tmp_path / "vmhwm"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, str(report), "get", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=WAIT,
        check=False,
    )
    return int(report.read_text()) * 1024, result


def release_when_done_or_late(gate: threading.Event, bulk: LoopbackServer) -> threading.Thread:
    """
    Open C{gate} once every bulk poem has been sent, or the bulk server has
    been L{QUIET} after serving this run a poem, or after L{STALL} seconds.
    """

    first = len(bulk.ended_at)
    done = first + POEMS

    def quiet() -> bool:
        if len(bulk.ended_at) == first:
            return False
        last = max(bulk.accepted_at[-1], bulk.ended_at[-1])
        return time.monotonic() - last >= QUIET

    def watch() -> None:
        deadline = time.monotonic() + STALL
        while time.monotonic() < deadline and len(bulk.ended_at) < done and not quiet():
            time.sleep(0.02)
        gate.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_poems_held_behind_a_stalled_source_stay_within_concurrency(tmp_path: Path) -> None:
    limits = ["-q", "-c", str(CONCURRENCY), "--max-bytes", "1M"]
    with LoopbackServer(POEM) as bulk:
        # The cost of the process itself with CONCURRENCY poems in memory at once.
        baseline, result = peak_of_get(tmp_path, *limits, *[bulk.source] * CONCURRENCY)
        assert result.returncode == 0, result.stderr

        gate = threading.Event()
        with LoopbackServer(b"late poem\n", gate=gate) as stalled:
            watcher = release_when_done_or_late(gate, bulk)
            peak, result = peak_of_get(tmp_path, *limits, stalled.source, *[bulk.source] * POEMS)
            watcher.join(WAIT)
    assert result.returncode == 0, result.stderr
    # Without the bound the 59 poems that finish first are all held: over
    # 100 MiB more (bytes and text).  With it, a few poems' worth at most.
    print(f"peak {peak / MIB:.1f} MiB, baseline {baseline / MIB:.1f} MiB")
    assert peak - baseline < 12 * MIB, (peak / MIB, baseline / MIB)


CAP = 100


class _Client:
    """Stands for a `PoetryClient`: each download is a Deferred the test fires."""

    def __init__(self, concurrency: int, max_bytes: int | None = CAP) -> None:
        self.concurrency = concurrency
        self.max_bytes = max_bytes
        self.started: dict[str, Deferred[Poem]] = {}

    def get(self, source: HTTPSource, *, progress: object = None) -> Deferred[Poem]:
        def cancel(download: Deferred[Poem]) -> None:
            download.errback(PoetryError(source.name, "cancelled", "cancelled"))

        download: Deferred[Poem] = Deferred(cancel)
        self.started[source.name] = download
        return download

    def finish(self, name: str, size: int = CAP) -> None:
        data = name.encode().ljust(size - 1, b".") + b"\n"
        self.started[name].callback(Poem(name, data, data.decode(), 0.0, "utf-8"))


def _fetch(client: _Client, names: list[str]) -> tuple[Fetch, BytesIO, Interruption]:
    stdout = BytesIO()
    interruption = Interruption()
    fetch = Fetch(
        MemoryReactorClock(),
        client,  # type: ignore[arg-type]
        [HTTPSource(name, f"http://127.0.0.1/{name}") for name in names],
        Presentation(quiet=True),
        interruption,
        Streams(stdout=stdout, stderr=StringIO()),
    )
    return fetch, stdout, interruption


def _shown(stdout: BytesIO) -> list[str]:
    return [line.rstrip(".") for line in stdout.getvalue().decode().splitlines()]


@pytest.mark.parametrize("max_bytes", [CAP, None])
def test_poems_at_the_cap_wait_behind_a_stalled_one_no_more_than_concurrency(
    max_bytes: int | None,
) -> None:
    names = [f"s{i}" for i in range(8)]
    client = _Client(3, max_bytes)
    fetch, stdout, _ = _fetch(client, names)
    run = Deferred.fromCoroutine(fetch.run())
    assert list(client.started) == ["s0", "s1", "s2"]
    client.finish("s1")
    client.finish("s2")
    assert list(client.started) == ["s0", "s1", "s2"]  # s1 and s2 wait behind s0
    client.finish("s0")  # all three shown: three more may start
    assert list(client.started) == names[:6]
    assert _shown(stdout) == ["s0", "s1", "s2"]
    for name in names[3:6]:
        client.finish(name)
    for name in names[6:]:
        client.finish(name)
    assert _shown(stdout) == names
    assert run.result == 0


def test_small_poems_keep_downloading_behind_a_stalled_one() -> None:
    names = [f"s{i}" for i in range(30)]
    client = _Client(3)
    fetch, stdout, _ = _fetch(client, names)
    run = Deferred.fromCoroutine(fetch.run())
    for name in names[1:25]:
        client.finish(name, size=4)  # 24 poems of 4 bytes: one download's worth
    # s0 and one more in flight, the next one would go past 3 x CAP.
    assert list(client.started) == names[:26]
    client.finish("s25", size=4)  # now 100 bytes wait: still one download in flight
    assert list(client.started) == names[:27]
    client.finish("s26", size=4)
    assert list(client.started) == names[:27]
    client.finish("s0", size=4)
    for name in names[27:]:
        client.finish(name, size=4)
    assert _shown(stdout) == names
    assert run.result == 0


def test_an_interrupt_while_waiting_for_room_starts_nothing_more() -> None:
    names = [f"s{i}" for i in range(6)]
    client = _Client(2)
    fetch, stdout, interruption = _fetch(client, names)
    run = Deferred.fromCoroutine(fetch.run())
    client.finish("s1")
    interruption.interrupt(2)
    run.cancel()  # as the runner does after the interrupt callbacks
    assert list(client.started) == ["s0", "s1"]
    assert stdout.getvalue() == b""
    assert run.called and run.result == 1
