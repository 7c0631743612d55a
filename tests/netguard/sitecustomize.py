"""
Keep every test on loopback.

Imported by ``tests/conftest.py`` for the pytest process and, through
PYTHONPATH, as ``sitecustomize`` by every CLI subprocess the tests start.
Name lookups answer only for loopback names and literals (anything else is
"name does not resolve", without a DNS query leaving the machine), and
``connect`` to a non-loopback address fails with ENETUNREACH.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})

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


def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
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
