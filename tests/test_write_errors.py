"""
Write errors on stdout: ``get`` as a subprocess writing to /dev/full, to a file
past the process's file size limit, and with stdout closed.

Each write that fails is one line on stderr naming the source, what could not
be written and why; every source is still reported; the exit status is 1 and
nothing prints a traceback.  A reader that goes away (``| head``) still ends
the run quietly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from loopback_servers import LoopbackServer, refused_port

from conftest import subprocess_env

WAIT = 20.0
POEM = b"p" * 100_000 + b"\n"
NO_SPACE = "could not write the poem to stdout: no space left on device (ENOSPC) [write-failed]"

#: Runs the CLI with the process's file size limit set first (Python ignores
#: SIGXFSZ, so a write past the limit fails with EFBIG after a partial write).
LIMITED = (
    "import resource, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "from poetry_endpoints.cli import main\n"
    "main(sys.argv[1:])\n"
)


def run(args: list[str], stdout: object, *, prefix: list[str] | None = None) -> tuple[int, str]:
    command = prefix or [sys.executable, "-m", "poetry_endpoints"]
    result = subprocess.run(
        [*command, "get", "-q", *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=WAIT,
        check=False,
    )
    err = result.stderr.decode()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return result.returncode, err


@pytest.fixture
def dev_full() -> Iterator[IO[bytes]]:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "wb") as full:
        yield full


def test_every_poem_that_cannot_be_written_is_reported(dev_full: object) -> None:
    with LoopbackServer(POEM) as a, LoopbackServer(b"short\n") as b, LoopbackServer(POEM) as c:
        status, err = run([a.source, b.source, c.source], dev_full)
    assert status == 1
    assert err.splitlines() == [f"poetry-endpoints: {s.source}: {NO_SPACE}" for s in (a, b, c)]


def test_json_to_a_full_disk_still_reports_each_failure(dev_full: object) -> None:
    refused = f"tcp:127.0.0.1:{refused_port()}"
    with LoopbackServer(POEM) as good:
        status, err = run(["--json", good.source, refused, good.source], dev_full)
    assert status == 1
    assert err.splitlines() == [
        f"poetry-endpoints: {good.source}: {NO_SPACE}",
        f"poetry-endpoints: {refused}: could not connect: connection refused [connect-failed]",
        f"poetry-endpoints: {refused}: could not write its JSON record to stdout: "
        "no space left on device (ENOSPC) [write-failed]",
        f"poetry-endpoints: {good.source}: {NO_SPACE}",
    ]


def test_a_poem_cut_short_by_the_file_size_limit_says_how_much_was_written(
    tmp_path: Path,
) -> None:
    limit = len(POEM) + 50_000
    prefix = [sys.executable, "-c", LIMITED, str(limit)]
    out = tmp_path / "out.txt"
    with LoopbackServer(POEM) as a, LoopbackServer(POEM) as b, LoopbackServer(POEM) as c:
        with out.open("wb") as file:
            status, err = run([a.source, b.source, c.source], file, prefix=prefix)
    assert status == 1
    too_large = "could not write the poem to stdout: file too large (EFBIG)"
    assert err.splitlines() == [
        f"poetry-endpoints: {b.source}: {too_large} after 50000 of {len(POEM)} bytes "
        "[write-failed]",
        f"poetry-endpoints: {c.source}: {too_large} [write-failed]",
    ]
    assert out.read_bytes() == POEM + POEM[:50_000]


def test_a_closed_stdout_is_a_write_error_not_a_traceback() -> None:
    with LoopbackServer(b"poem\n") as server:
        # The shell closes file descriptor 1 before Python starts.
        status, err = run(
            [server.source],
            subprocess.DEVNULL,
            prefix=["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "poetry_endpoints"],
        )
    assert status == 1
    assert err.splitlines() == [
        f"poetry-endpoints: {server.source}: could not write the poem to stdout: "
        "stdout is closed (EBADF) [write-failed]"
    ]
