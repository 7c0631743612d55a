"""
The benchmark's poetry server: one listening socket per payload size.

Runs in its own process so that serving never competes with a client for the
GIL.  Each listener has a thread with a plain blocking accept loop that sends
its whole payload with one ``sendall`` and closes cleanly, which is as fast as
a Python server gets and keeps the server out of the measurements.

A payload larger than 64 MiB (the 1 GiB memory run) is never built whole: it
is sent as one 64 MiB block repeated, then a tail, so the server's own memory
stays at 64 MiB whatever the size.

Prints one JSON line, ``{"SIZE": PORT, ...}``, once every socket listens, and
exits when its standard input closes (so it never outlives the runner).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading

BACKLOG = 4096
LINE = (
    b"Twisted endpoints carry a poem down the loopback, byte by byte, "
    b"until the server closes cleanly.\n"
)


#: The largest payload held whole; bigger ones repeat a block of this size.
BLOCK = 64 * 1024 * 1024


def payload(size: int) -> bytes:
    """C{size} bytes of ASCII poetry (valid UTF-8), lines repeated."""
    return (LINE * (size // len(LINE) + 1))[:size]


def serve(listener: socket.socket, size: int, block: memoryview) -> None:
    """Accept forever; send C{size} bytes (C{block} repeated) to each connection, then close it."""
    while True:
        conn, _ = listener.accept()
        try:
            left = size
            while left:
                conn.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))
        except OSError:
            pass  # a client that gave up; the next one still gets served
        finally:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", type=int, nargs="+", help="payload sizes in bytes")
    args = parser.parse_args()
    ports: dict[str, int] = {}
    for size in dict.fromkeys(args.sizes):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(BACKLOG)
        ports[str(size)] = listener.getsockname()[1]
        block = memoryview(payload(min(size, BLOCK)))  # built before the port is announced
        threading.Thread(target=serve, args=(listener, size, block), daemon=True).start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # returns at EOF: the runner has finished or died
    os._exit(0)


if __name__ == "__main__":
    main()
