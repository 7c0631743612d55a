"""
Plain-socket poetry servers on loopback, for testing the CLI as a subprocess.

Each server runs in a thread of the pytest process (never the Twisted
reactor, which the subprocess under test owns), listens on 127.0.0.1:0 or a
Unix socket, and answers every connection with the same behaviour: send the
poem, then close cleanly, reset, or stall until the server is closed.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Ending = Literal["close", "reset", "stall"]
WAIT = 10.0


class LoopbackServer:
    """
    A poetry server in a thread.

    @param data: the poem's bytes, sent in one go to every connection.
    @param ending: after the poem, ``close`` cleanly (a whole poem), ``reset``
        (RST: an incomplete poem), or ``stall`` (hold the connection open
        until the client closes it or L{close} is called).
    @param gate: if given, each connection waits for it before sending.
    @param unix: listen on a Unix socket in a temporary directory instead of TCP.
    """

    def __init__(
        self,
        data: bytes,
        *,
        ending: Ending = "close",
        gate: threading.Event | None = None,
        unix: bool = False,
    ) -> None:
        self.data = data
        self.ending = ending
        self.gate = gate
        self.connections = 0
        #: Set when the first connection is accepted.
        self.connected = threading.Event()
        #: Set when a connection has ended (sent and closed, or the client left).
        self.finished = threading.Event()
        #: time.monotonic() of every accept and every end, for ordering checks.
        self.accepted_at: list[float] = []
        self.ended_at: list[float] = []
        #: time.monotonic() just before each clean close, so it precedes all it causes.
        self.closing_at: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if unix:
            self._tempdir = tempfile.TemporaryDirectory(prefix="poetry-test-")
            path = os.path.join(self._tempdir.name, "poetry.sock")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(path)
            self.source = f"unix:{path}"
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self.port = self._listener.getsockname()[1]
            self.source = f"tcp:127.0.0.1:{self.port}"
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.accepted_at.append(time.monotonic())
            self.connected.set()
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            if self.gate is not None:
                while not self.gate.wait(0.05):
                    if self._stop.is_set():
                        return
            try:
                connection.sendall(self.data)
                if self.ending == "reset":
                    # Linger 0 makes close() send RST instead of FIN.
                    linger = struct.pack("ii", 1, 0)
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                elif self.ending == "stall":
                    self._wait_for_client_to_leave(connection)
                else:
                    with self._lock:
                        self.closing_at.append(time.monotonic())
            except OSError:
                pass
        with self._lock:
            self.ended_at.append(time.monotonic())
        self.finished.set()

    def _wait_for_client_to_leave(self, connection: socket.socket) -> None:
        connection.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if not connection.recv(4096):
                    return
            except TimeoutError:
                continue

    def close(self) -> None:
        """Stop listening, end every connection, and remove the Unix socket."""
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(WAIT)
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Sockets bound to a port but never listening, kept for the life of the process.
_REFUSING: list[socket.socket] = []


def refused_port() -> int:
    """
    A TCP port on 127.0.0.1 that refuses connections for the rest of this process.

    It is held by a socket that is bound but never listens: a connection to it
    is refused, and no other process can bind it meanwhile.  A port merely
    released after the kernel chose it is free for anyone: a parallel test
    run's server can take it and answer.
    """
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    _REFUSING.append(holder)
    port: int = holder.getsockname()[1]
    return port


@contextmanager
def servers(*poems: bytes, ending: Ending = "close") -> Iterator[list[LoopbackServer]]:
    """One TCP server per poem, all closed afterwards."""
    started = [LoopbackServer(poem, ending=ending) for poem in poems]
    try:
        yield started
    finally:
        for server in started:
            server.close()
