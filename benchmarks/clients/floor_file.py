"""
The streaming floor: the floor's blocking read, then one write to a file.

Does the job a streaming client does (take one poem off the loopback and put
it in a file in C{--dir}) as cheaply as Python can: ``recv_into`` one buffer
allocated before the clock starts, then a single ``write`` of it to a new file
in the same folder the streaming clients write to.  With ``--form fsync`` it
also flushes the file to disk (``fsync``) before closing it, as the
library's atomic file writer does before its rename.  It must know
the size in advance and holds the whole poem in memory, so it is a yardstick
for time, not for memory.
"""

from __future__ import annotations

import os
import socket

from _common import HOST, parse_args, run_sync


def main() -> None:
    job = parse_args(("plain", "fsync"))
    # One byte more than the poem, so the read that sees the close has room.
    buffer = bytearray(job.size + 1)
    view = memoryview(buffer)
    path = os.path.join(job.folder, f"floor-{os.getpid()}.txt")

    def fetch_one() -> int:
        with socket.create_connection((HOST, job.port)) as sock:
            got = 0
            while n := sock.recv_into(view[got:]):
                got += n
        with open(path, "wb") as file:
            file.write(view[:got])
            if job.form == "fsync":
                file.flush()
                os.fsync(file.fileno())
        return os.stat(path).st_size

    try:
        run_sync(job, fetch_one)
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
