"""
Run ``poetry-endpoints serve``/``proxy`` or ``twist`` as a subprocess, and talk to it.

Output is read by threads into queues, so every wait has a bound and a full
pipe never blocks the server.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from conftest import subprocess_env

WAIT = 15.0
LISTENING = re.compile(r"listening on (\S+)")


def cli(*args: str) -> list[str]:
    """The argv of ``python -m poetry_endpoints ARGS``."""
    return [sys.executable, "-m", "poetry_endpoints", *args]


def twist(*args: str) -> list[str]:
    """The argv of ``python -m twisted ARGS`` (the ``twist`` command), logging as text."""
    return [sys.executable, "-m", "twisted", "--log-format", "text", *args]


class Running:
    """A server subprocess whose stdout and stderr are collected line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        preexec_fn: Callable[[], Any] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
            cwd=cwd,
            preexec_fn=preexec_fn,
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._stderr_done = threading.Event()
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._collect, args=(self.process.stderr,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.stdout.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.stdout.put(None)

    def _collect(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        self._stderr_done.set()

    def next_line(self, timeout: float = WAIT) -> str | None:
        """The next stdout line, or C{None} at end of output."""
        try:
            line = self.stdout.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output from {self.argv} within {timeout} s; stderr: {self.stderr}"
            ) from None
        if line is not None:
            self.stdout_lines.append(line)
        return line

    def sources(self, count: int, timeout: float = WAIT) -> list[str]:
        """Read stdout until C{count} ``listening on SOURCE`` lines have come; the sources."""
        found: list[str] = []
        while len(found) < count:
            line = self.next_line(timeout)
            if line is None:
                self.process.wait(timeout)
                raise AssertionError(
                    f"{self.argv} ended ({self.process.returncode}) before listening; "
                    f"stderr: {self.stderr}"
                )
            match = LISTENING.search(line)
            if match:
                found.append(match.group(1))
        return found

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send C{signum}, wait for the exit, drain the output; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the exit and the end of the output; the exit status."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
            raise AssertionError(f"{self.argv} did not exit within {timeout} s") from None
        self._stderr_done.wait(timeout)
        while True:
            try:
                line = self.stdout.get(timeout=timeout)
            except queue.Empty:
                break
            if line is None:
                break
            self.stdout_lines.append(line)
        return status

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def address(source: str) -> tuple[int, Any]:
    """The socket family and address of a ``listening on`` source."""
    if source.startswith("unix:"):
        return socket.AF_UNIX, source[len("unix:") :].replace("\\:", ":")
    if source.startswith("tcp:"):
        host, port = source[len("tcp:") :].rsplit(":", 1)
        return socket.AF_INET, (host, int(port))
    match = re.fullmatch(r"\[(.+)\]:(\d+)", source)
    assert match, f"unexpected source {source!r}"
    return socket.AF_INET6, (match.group(1), int(match.group(2)))


def connect(source: str, timeout: float = WAIT) -> socket.socket:
    """A plain socket connected to C{source}."""
    family, where = address(source)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(where)
    return sock


def fetch(source: str, timeout: float = WAIT) -> bytes:
    """Everything C{source} sends until it closes cleanly; raises on a reset or a timeout."""
    with connect(source, timeout) as sock:
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
