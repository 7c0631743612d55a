"""
The peak memory of a CLI run, as the process itself counts it.

C{os.wait4}'s C{ru_maxrss} is the wrong number for a child of the test
process: Linux carries the peak across fork and exec, so a small client
started by a pytest process that once held 300 MB reports at least 300 MB,
and a memory test passes or fails by the order the tests ran in.  C{VmHWM}
in C{/proc/self/status} is the high-water mark of the process's own address
space, which exec starts afresh.  The child reads it as it exits and writes
it to a file the test reads afterwards.

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "peak"
        subprocess.run(measured_cli(report, "get", source), ...)
        peak = read_peak(report)  # bytes
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Run by C{python -c}: argv[1] is the report's path, the rest is the CLI's.
#: The report is written by an C{atexit} hook, so it covers every normal end
#: (C{sys.exit} with any status); a process that ends with C{os._exit} or a
#: signal writes none, and L{read_peak} says so.
_WRAPPER = """\
import atexit, sys

def _report(path=sys.argv[1]):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                kib = int(line.split()[1])
                break
        else:
            return
    with open(path, "w", encoding="ascii") as out:
        out.write(str(kib * 1024))

atexit.register(_report)
sys.argv = ["poetry-endpoints", *sys.argv[2:]]
from poetry_endpoints.cli import main
main()
"""


def measured_cli(report: Path, *args: str) -> list[str]:
    """
    The argv of ``poetry-endpoints ARGS`` that writes its own peak resident
    memory, in bytes, to C{report} as it exits.
    """
    return [sys.executable, "-c", _WRAPPER, str(report), *args]


def read_peak(report: Path) -> int:
    """The peak, in bytes, that a process started by L{measured_cli} reported."""
    try:
        text = report.read_text(encoding="ascii")
    except FileNotFoundError:
        raise AssertionError(
            f"no peak memory in {report}: the process did not exit normally"
        ) from None
    return int(text)
