"""
How long a subprocess takes to exit, counting only the time that is its own.

The promise "a signal is answered within 1 s" is about the program, not about
the machine it runs on.  Timed on the wall clock, a child's exit also includes
the time it spent runnable but waiting for a CPU that other processes held: a
second pytest worker, or any other load.  L{time_to_exit} measures the wall
time, the child's CPU time, and, by sampling the state of its threads every
few milliseconds in C{/proc}, the time it spent waiting for a CPU; the child's
own time is the rest: running, or waiting on something that is not a CPU (a
timer, a thread, a socket, a lock).  A child that sleeps 1.2 s before exiting
takes 1.2 s of its own however busy the machine is; one that computes for
1.2 s takes 1.2 s of CPU; on an idle machine its own time is its wall time.

Linux's own account of this wait (C{/proc/PID/schedstat}) is empty when the
kernel keeps no scheduler statistics, as on some virtual machines, hence the
sampling.  Without C{/proc} nothing is excused: the own time is the wall time.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

#: Between two looks at the child's state.
SAMPLE = 0.002
_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = os.path.isdir("/proc/self/task")


@dataclass(frozen=True)
class Exit:
    """How a child's exit went, in seconds from the start of the measurement."""

    #: On the wall clock, to the moment the exit was seen.
    wall: float
    #: The child's CPU time (all its threads, user and system) in that span.
    cpu: float
    #: Runnable but not running: waiting for a CPU others held (an estimate).
    queued: float

    @property
    def own(self) -> float:
        """The wall time less the wait for a CPU: what the child itself took."""
        return self.wall - self.queued

    def __str__(self) -> str:
        return (
            f"{self.own:.2f} s of its own ({self.wall:.2f} s wall, "
            f"{self.cpu:.2f} s CPU, {self.queued:.2f} s waiting for a CPU)"
        )


def _cpu(pid: int) -> float | None:
    """The CPU time of C{pid} and all its threads so far, also once it is a zombie."""
    if not _PROC:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _runnable(pid: int) -> bool:
    """Whether any thread of C{pid} is running or waiting to run (state R)."""
    if not _PROC:
        return False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "R":
                    return True
        except OSError:
            continue
    return False


def time_to_exit(process: subprocess.Popen[Any], timeout: float, signum: int | None = None) -> Exit:
    """
    Send C{signum} (if given) to C{process} now and time it until it exits.

    The process is left unreaped (C{waitid} with C{WNOWAIT}), so that its
    C{Popen} collects the status and the output as usual afterwards.  Its
    pipes must not fill meanwhile: a child blocked on a full pipe is waiting
    on its reader, which counts as its own time.

    @raise AssertionError: if it has not exited within C{timeout} seconds.
    """
    pid = process.pid
    cpu_before = _cpu(pid)
    started = time.monotonic()
    if signum is not None:
        process.send_signal(signum)
    runnable_for = 0.0
    last, was_runnable = started, True  # a signalled process is runnable
    while True:
        exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        now = time.monotonic()
        runnable = exited is None and _runnable(pid)
        # Each interval is counted by its ends: both runnable, all of it; one, half.
        runnable_for += (now - last) * (was_runnable + runnable) / 2
        if exited is not None:
            break
        if now - started > timeout:
            raise AssertionError(f"{process.args!r} did not exit within {timeout} s")
        last, was_runnable = now, runnable
        time.sleep(SAMPLE)
    wall = now - started
    cpu_after = _cpu(pid)
    if cpu_before is None or cpu_after is None:
        return Exit(wall, wall, 0.0)
    cpu = cpu_after - cpu_before
    # Runnable time is running (the CPU time) plus waiting to run.
    queued = min(max(0.0, runnable_for - cpu), wall)
    return Exit(wall, cpu, queued)
