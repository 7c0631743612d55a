"""
The floor: a blocking socket reading into one preallocated buffer.

No event loop, no copies beyond the kernel's, no decoding: the fastest a
Python process can take bytes off the loopback.  Not a usable client (it must
know the size in advance); a yardstick for the others.
"""

from __future__ import annotations

import socket

from _common import HOST, parse_args, run_sync


def main() -> None:
    job = parse_args()
    # One byte more than the poem, so the read that sees the close has room.
    buffer = bytearray(job.size + 1)
    view = memoryview(buffer)

    def fetch_one() -> int:
        with socket.create_connection((HOST, job.port)) as sock:
            got = 0
            while n := sock.recv_into(view[got:]):
                got += n
        return got

    run_sync(job, fetch_one)


if __name__ == "__main__":
    main()
