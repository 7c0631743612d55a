"""Running a CLI subprocess with a pseudo-terminal on one of its streams, and reading it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


def read_pty(fd: int, deadline: float, until: bytes | None = None) -> bytes:
    """
    What is written to C{fd} until C{until} has appeared, the other end has
    closed, or the deadline (C{time.monotonic()}) has passed.
    """
    seen = b""
    while until is None or until not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the last writer on a pty has gone
            break
        if not chunk:
            break
        seen += chunk
    return seen


@dataclass
class TerminalRun:
    """How a run with a terminal on one stream went."""

    returncode: int
    #: What the other stream (a pipe) received.
    piped: bytes
    #: What the terminal showed.
    shown: bytes


def run_on_terminal(
    argv: Sequence[str],
    *,
    terminal: Literal["stdout", "stderr"],
    env: dict[str, str],
    timeout: float,
) -> TerminalRun:
    """Run C{argv} to its end with a pty as its C{terminal} stream and a pipe as the other."""
    controller, end = pty.openpty()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, terminal: end}
    process = subprocess.Popen(
        argv,
        stdout=streams["stdout"],
        stderr=streams["stderr"],
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(end)
    try:
        shown = read_pty(controller, time.monotonic() + timeout)
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
        process.wait(timeout)
        os.close(controller)
    return TerminalRun(process.returncode, err if terminal == "stdout" else out, shown)
