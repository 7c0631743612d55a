"""
A raw HTTP server in a thread, written without project code, for hostile answers.

It reads each request up to the end of its head and hands the socket to an
C{answer} callable, which sends whatever it likes (a lying head, a body cut
short, a flood) and ends the connection its own way.  Tests of the CLI (a
subprocess) and of the library (the trial reactor) share it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

from certs import Issued

Answer = Callable[[socket.socket], None]
WAIT = 15.0


class RawHTTPServer:
    """
    Accepts up to C{connections} connections on 127.0.0.1, in a thread; for
    each, reads one request (kept in C{requests}) and calls C{answer} with
    the socket, then closes it.  C{sent} is set once an answer has returned
    without a socket error.  Every socket operation waits C{wait} seconds at
    most.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        tls: Issued | None = None,
        connections: int = 1,
        wait: float = WAIT,
    ) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.sent = threading.Event()
        self.wait = wait
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(wait)
        self.port = self.listener.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(tls.cert, tls.key)
        scheme, host = ("http", "127.0.0.1") if tls is None else ("https", "localhost")
        self.url = f"{scheme}://{host}:{self.port}/poem"
        self._connections = connections
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(self._connections):
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                connection.settimeout(self.wait)
                if self.context is not None:
                    connection = self.context.wrap_socket(connection, server_side=True)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                self.answer(connection)
                self.sent.set()
            except OSError:  # the client gave up on us, as it may (over its cap, say)
                pass
            finally:
                connection.close()

    def close(self) -> None:
        """Stop listening and wait for the thread."""
        # Closing a socket does not wake a thread blocked in its accept();
        # shutting it down does (on Linux), so a server that never saw its
        # connection ends now rather than when the accept times out.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(self.wait)


def responding(data: bytes) -> Answer:
    """An answer that sends C{data}, then lets the server close the socket."""

    def answer(connection: socket.socket) -> None:
        connection.sendall(data)

    return answer
