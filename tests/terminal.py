"""Running a CLI subprocess with a pseudo-terminal on one of its streams, and reading it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal


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


@dataclass
class ScreenRun:
    """How a run with one terminal for both stdout and stderr went, as a person would see it."""

    returncode: int
    #: Every byte the terminal received.
    raw: bytes
    #: The emulated terminal at the end (a C{pyte.HistoryScreen}).
    screen: Any

    def visible(self) -> list[str]:
        """The lines on the screen at the end, trailing spaces removed."""
        return [line.rstrip() for line in self.screen.display]

    def scrolled(self) -> list[str]:
        """The lines that scrolled off the top, oldest first, trailing spaces removed."""
        return [line.rstrip() for line in self.raw_lines()[: len(self.screen.history.top)]]

    def raw_lines(self) -> list[str]:
        """
        The scrolled and the visible lines, spaces kept, so that a line the
        terminal cut in two can be put together again.
        """
        columns = self.screen.columns
        every = [
            *self.screen.history.top,
            *(self.screen.buffer[y] for y in range(self.screen.lines)),
        ]
        return ["".join(line[x].data for x in range(columns)) for line in every]

    def lines(self) -> list[str]:
        """Everything a person could see or scroll back to, without the trailing blank lines."""
        every = self.scrolled() + self.visible()
        while every and not every[-1]:
            every.pop()
        return every


def run_on_screen(
    argv: Sequence[str],
    *,
    columns: int,
    rows: int,
    env: dict[str, str],
    timeout: float,
    stdout: int | None = None,
) -> ScreenRun:
    """
    Run C{argv} to its end with one pty of C{columns} x C{rows} as both its
    stdout and its stderr (a user's terminal), and replay what it wrote on a
    terminal emulator of that size with a scrollback.  With C{stdout} (a
    file descriptor or C{subprocess.DEVNULL}) stdout goes there instead.
    """
    import pyte  # the test extra's; only the screen tests need it

    controller, end = pty.openpty()
    fcntl.ioctl(end, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in {"COLUMNS", "LINES"}}
    env.setdefault("TERM", "xterm-256color")
    out = end if stdout is None else stdout
    process = subprocess.Popen(argv, stdout=out, stderr=end, stdin=subprocess.DEVNULL, env=env)
    os.close(end)
    try:
        raw = read_pty(controller, time.monotonic() + timeout)
        process.wait(timeout)
    finally:
        process.kill()
        process.wait(timeout)
        os.close(controller)
    screen = pyte.HistoryScreen(columns, rows, history=10_000, ratio=0.5)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    return ScreenRun(process.returncode, raw, screen)
