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
        until L{close}).
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
        self.connected = threading.Event()
        self.finished = threading.Event()
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
                    self._stop.wait(WAIT * 6)
            except OSError:
                pass
        self.finished.set()

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


def refused_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (so connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
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
