"""
Keep every test on loopback.

Imported by ``tests/conftest.py`` for the pytest process and, through
PYTHONPATH, as ``sitecustomize`` by every CLI subprocess the tests start.
Name lookups answer only for loopback names and literals (anything else is
"name does not resolve", without a DNS query leaving the machine), and
``connect`` to a non-loopback address fails with ENETUNREACH.

A slow resolver, for tests of what waits on one: with ``NETGUARD_SLOW_SECONDS``
set, a lookup of any name ending in ``.slow.invalid`` first sleeps that many
seconds, then fails like any other name.  With ``NETGUARD_SLOW_LOG`` set to a
file, each such lookup appends a line ``start NAME`` to it as it begins and
``end NAME`` as it ends, so a test can tell that a lookup is under way and
count them.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
SLOW_SUFFIX = ".slow.invalid"

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def is_loopback_literal(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _allowed_name(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return str(host).lower() in LOOPBACK_NAMES or is_loopback_literal(host)


def _log_slow(event: str, name: str) -> None:
    path = os.environ.get("NETGUARD_SLOW_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{event} {name}\n")


def _slow_lookup(host: object) -> None:
    seconds = os.environ.get("NETGUARD_SLOW_SECONDS")
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not seconds or not isinstance(host, str) or not host.lower().endswith(SLOW_SUFFIX):
        return
    _log_slow("start", host)
    try:
        time.sleep(float(seconds))
    finally:
        _log_slow("end", host)


def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _slow_lookup(host)
    if not _allowed_name(host):
        raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        if not is_loopback_literal(address[0]):
            raise OSError(errno.ENETUNREACH, f"tests may only connect to loopback, not {address}")


def guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def guarded_connect_ex(self: socket.socket, address: Any) -> int:
    try:
        _check_address(self, address)
    except OSError as e:
        return e.errno or errno.ENETUNREACH
    return _real_connect_ex(self, address)


def install() -> None:
    socket.getaddrinfo = guarded_getaddrinfo
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]


install()
