"""The tests' own network guard: nothing leaves loopback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import subprocess_env


def test_unknown_names_do_not_resolve_and_send_nothing() -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("poetry.example", 80)


def test_loopback_names_still_resolve() -> None:
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)


def test_connecting_off_loopback_is_refused() -> None:
    with socket.socket() as s:
        assert s.connect_ex(("192.0.2.1", 9)) != 0


def test_subprocesses_get_the_guard_too() -> None:
    code = (
        "import socket\n"
        "try:\n socket.getaddrinfo('poetry.example', 1)\n"
        "except socket.gaierror:\n print('guarded')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.stdout.strip() == "guarded"
