"""
The settings of one client, checked once and never changed afterwards.

A `ClientSettings` is shared, read-only, by the `PoetryClient` that made it
and by each kind of source's fetcher (endpoints, HTTP): whatever reads a
setting reads the same value for the client's whole life.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from twisted.internet.interfaces import IReactorTime

from .decoding import check_choice
from .defaults import (
    DEFAULT_BACKOFF,
    DEFAULT_CONCURRENCY,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES,
)
from .resolving import sharing_resolution
from .tls import trust_root


@dataclass(frozen=True)
class ClientSettings:
    """
    One client's settings; see `PoetryClient` for what each one means.

    Build it with L{ClientSettings.checked}, which refuses a bad value with
    an exception naming the parameter.

    @ivar reactor: the reactor, typed as the clock Twisted's timing APIs take.
    @ivar endpoint_reactor: what endpoints are built with: the reactor, with
        name lookups shared by every download of the client.
    """

    reactor: IReactorTime
    endpoint_reactor: Any
    timeout: float | None = None
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_bytes: int | None = DEFAULT_MAX_BYTES
    encoding: str | None = None
    errors: str = "strict"
    concurrency: int = DEFAULT_CONCURRENCY
    retries: int = 0
    backoff: float = DEFAULT_BACKOFF
    cacert: str | None = None
    user_agent: str | None = None
    allow_downgrade: bool = False

    @classmethod
    def checked(
        cls,
        reactor: Any,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        encoding: str | None = None,
        errors: str = "strict",
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = 0,
        backoff: float = DEFAULT_BACKOFF,
        cacert: str | None = None,
        user_agent: str | None = None,
        allow_downgrade: bool = False,
    ) -> ClientSettings:
        """
        Check every value and build the settings.

        @raise TypeError: a value of the wrong type; the message names it.
        @raise ValueError: a value out of range, an encoding that cannot
            decode a poem, or a C{cacert} that is not a PEM certificate.
        @raise LookupError: an unknown encoding or error handler.
        @raise OSError: a C{cacert} that cannot be read.
        """
        _check_seconds("timeout", timeout)
        _check_seconds("idle_timeout", idle_timeout)
        if max_bytes is not None:
            _check_int("max_bytes", max_bytes, 1)
        _check_int("concurrency", concurrency, 1)
        _check_int("retries", retries, 0)
        if _real("backoff", backoff) < 0:
            raise ValueError(f"backoff must be 0 or more seconds, not {backoff!r}")
        check_choice(encoding, errors)
        if cacert is not None:
            trust_root(cacert)  # OSError or ValueError now, not on the first TLS source
        if user_agent is not None and not (
            user_agent.isascii() and user_agent.isprintable() and user_agent
        ):
            raise ValueError(f"user_agent must be non-empty printable ASCII, not {user_agent!r}")
        return cls(
            reactor=reactor,
            endpoint_reactor=sharing_resolution(reactor),
            timeout=timeout,
            idle_timeout=idle_timeout,
            max_bytes=max_bytes,
            encoding=encoding,
            errors=errors,
            concurrency=concurrency,
            retries=retries,
            backoff=backoff,
            cacert=cacert,
            user_agent=user_agent,
            allow_downgrade=allow_downgrade,
        )


def _real(name: str, value: object) -> float:
    # bool is an int to Python, but timeout=True is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _check_seconds(name: str, value: object) -> None:
    if value is not None and not _real(name, value) > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")


def _check_int(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be {least} or more, not {value!r}")
