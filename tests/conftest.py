"""Shared test set-up: the loopback-only network guard, and an environment for subprocesses."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

NETGUARD = Path(__file__).parent / "netguard"

_spec = importlib.util.spec_from_file_location("_netguard", NETGUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
netguard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netguard)  # installs the guard in the pytest process


def subprocess_env(**extra: str) -> dict[str, str]:
    """
    An environment for CLI subprocesses: the same guard, no colours, UTF-8.

    Bytecode is written (to __pycache__, as Python does by default) even
    where the environment says not to: the package's modules are imported by
    hundreds of subprocesses, and compiling them again in each one cost about
    30 ms a process.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def unix_socket_path(case: Any) -> str:
    """
    A fresh Unix socket path for a trial test, removed after it.

    Not trial's C{mktemp}, which makes its folders under the working
    directory (the checkout) and can make paths too long for a socket.
    """
    folder = tempfile.mkdtemp(prefix="poetry-test-")
    case.addCleanup(shutil.rmtree, folder, True)
    return os.path.join(folder, "poetry.sock")


def run_main(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """
    Run the command line in this process, for checks that end before the
    reactor runs (usage errors, --version): its exit status, stdout and
    stderr.  Starting a process costs far more than such a check.
    """
    from inprocess import exit_status

    capsys.readouterr()  # what came before is not this command's
    status = exit_status(argv)
    out, err = capsys.readouterr()
    return status, out, err
