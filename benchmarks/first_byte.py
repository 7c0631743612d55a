"""
Time to first byte through ``poetry-endpoints get -o - SOURCE | head -c 20``.

A server thread (in the runner's process, not the command's) accepts one
connection, reads ``time.monotonic_ns()`` just before it sends the poem's
first bytes, sends them, then waits C{pause} seconds before sending the rest
and closing.  The runner starts the pipeline and reads ``head``'s standard
output; the moment its first byte arrives is read from the same clock.
``CLOCK_MONOTONIC`` is one clock for every process of the machine, so the
difference is the time the first bytes took through the command and ``head``.
A command that held the poem until the close would show the whole pause.
"""

from __future__ import annotations

import os
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: The poem: the first bytes, sent at once, then the rest after the pause.
HEAD = b"The first line of a slow poem arrives at once,\n"
REST = b"and the rest waits for the server to be ready.\n" * 64
#: What ``head -c`` keeps.
HEAD_BYTES = 20


class FirstByteError(Exception):
    """The pipeline did not behave: no number can be given."""


@dataclass
class FirstByte:
    """One measurement."""

    #: Nanoseconds from the server's first send to the first byte out of ``head``.
    latency_ns: int
    #: What came out of ``head`` (the poem's first C{HEAD_BYTES} bytes if all is well).
    output: bytes
    #: The command's exit status (it dies of a broken pipe or finishes; not judged).
    status: int | None


def _serve_once(listener: socket.socket, pause: float, stamps: queue.Queue[int]) -> None:
    listener.settimeout(30)
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    with conn:
        try:
            stamps.put(time.monotonic_ns())
            conn.sendall(HEAD)
            time.sleep(pause)
            conn.sendall(REST)
        except OSError:
            pass  # the command went away after head exited: expected


def measure(
    command: list[str], env: Mapping[str, str], pause: float, timeout: float = 30.0
) -> FirstByte:
    """
    Run C{command + [SOURCE]} piped into ``head -c 20`` against a fresh server.

    @param command: the command without its source, e.g. C{[python, -m,
        poetry_endpoints, get, -o, -]}.
    """
    stamps: queue.Queue[int] = queue.Queue()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        server = threading.Thread(target=_serve_once, args=(listener, pause, stamps), daemon=True)
        server.start()
        producer = subprocess.Popen(
            [*command, f"tcp:127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
        )
        assert producer.stdout is not None
        head = subprocess.Popen(
            ["head", "-c", str(HEAD_BYTES)], stdin=producer.stdout, stdout=subprocess.PIPE
        )
        # head holds the only reading end, so a broken pipe reaches the command.
        producer.stdout.close()
        assert head.stdout is not None
        try:
            output = b""
            first_ns: int | None = None
            deadline = time.monotonic() + timeout
            with selectors.DefaultSelector() as selector:
                selector.register(head.stdout, selectors.EVENT_READ)
                while time.monotonic() < deadline:
                    if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                        continue
                    chunk = os.read(head.stdout.fileno(), 4096)
                    if first_ns is None and chunk:
                        first_ns = time.monotonic_ns()
                    if not chunk:
                        break
                    output += chunk
            if first_ns is None:
                raise FirstByteError(f"no byte came out of head within {timeout:g} s")
            try:
                sent_ns = stamps.get(timeout=5)
            except queue.Empty:
                raise FirstByteError("the server never sent its first byte") from None
            status = None
            try:
                status = producer.wait(timeout=pause + 10)
            except subprocess.TimeoutExpired:
                pass
            return FirstByte(first_ns - sent_ns, output, status)
        finally:
            for process in (head, producer):
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
            head.stdout.close()
            server.join(timeout=pause + 10)


if __name__ == "__main__":
    result = measure(
        [sys.executable, "-m", "poetry_endpoints", "get", "-q", "-o", "-"], os.environ, 0.5
    )
    print(f"{result.latency_ns / 1e6:.1f} ms, {result.output!r}, status {result.status}")
