"""
Slow and failing name lookups (issue 14 items 11 and 14).

In memory: a name that does not resolve is looked up once for a whole run's
sources, not once per batch of connections.  As processes: with the test
network guard's slow resolver (names ending ``.slow.invalid``), a signal or
a timeout ends ``get`` at once instead of when ``getaddrinfo`` returns, and
200 sources on a dead name cost one lookup.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from promptness import time_to_exit
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from conftest import subprocess_env
from poetry_endpoints import PoetryClient, PoetryError
from poetry_endpoints.resolving import DEFAULT_NEGATIVE_TTL, CachingResolver

#: From the signal to the exit of the process, as for any other interruption: the
#: process's own time (promptness.py), not the time it waited for a busy CPU.
PROMPT = 1.0
#: Longer than any test here may take: a run that waits for it fails.
RESOLVER_SECONDS = 30
WAIT = 20.0
DEAD = "poem.slow.invalid"


# --- in memory: failed lookups are remembered ---------------------------------------------


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        raise NotImplementedError


@implementer(IHostnameResolver)
class SlowDeadResolver:
    """Answers every lookup with no address, C{seconds} after it was asked; counts them."""

    def __init__(self, reactor: MemoryReactorClock, seconds: float) -> None:
        self.reactor = reactor
        self.seconds = seconds
        self.lookups = 0

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[object] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.lookups += 1
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        self.reactor.callLater(self.seconds, resolutionReceiver.resolutionComplete)
        return resolution


@implementer(IReactorPluggableNameResolver)
class DeadNameReactor(MemoryReactorClock):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.nameResolver = SlowDeadResolver(self, seconds)

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        old, self.nameResolver = self.nameResolver, resolver
        return old


@implementer(IResolutionReceiver)
class Receiver:
    def __init__(self) -> None:
        self.addresses: list[object] = []
        self.complete = False

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: object) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.complete = True


def test_a_failed_lookup_is_remembered_for_the_negative_ttl() -> None:
    reactor = DeadNameReactor(seconds=2.0)
    resolver = CachingResolver(reactor)
    first = [Receiver() for _ in range(100)]
    for receiver in first:
        resolver.resolveHostName(receiver, DEAD, 80)
    assert reactor.nameResolver.lookups == 1  # shared while in flight
    reactor.advance(2.0)
    assert all(r.complete and r.addresses == [] for r in first)
    later = [Receiver() for _ in range(900)]
    for receiver in later:
        resolver.resolveHostName(receiver, DEAD, 80)
    # Answered from memory on the next turn of the reactor, not inside the
    # call (where the failure would start the next download, and so on).
    assert not any(r.complete for r in later)
    reactor.advance(0)
    assert all(r.complete and r.addresses == [] for r in later)
    assert reactor.nameResolver.lookups == 1
    reactor.advance(DEFAULT_NEGATIVE_TTL)
    resolver.resolveHostName(Receiver(), DEAD, 80)
    assert reactor.nameResolver.lookups == 2


def test_a_negative_ttl_of_zero_asks_every_time() -> None:
    reactor = DeadNameReactor(seconds=1.0)
    resolver = CachingResolver(reactor, negative_ttl=0)
    for _ in range(3):
        resolver.resolveHostName(Receiver(), DEAD, 80)
        reactor.advance(1.0)
    assert reactor.nameResolver.lookups == 3


def test_a_thousand_sources_on_a_dead_name_cost_one_slow_lookup() -> None:
    # The numbers: a 2 s resolver, 1,000 sources, 100 at a time.
    # Without the negative cache, each batch of 100 waits for a lookup of
    # its own: 20 s in all.
    reactor = DeadNameReactor(seconds=2.0)
    client = PoetryClient(reactor, concurrency=100)
    outcomes: list[Failure] = []
    for _ in range(1000):
        client.get(f"{DEAD}:80").addErrback(outcomes.append)
    elapsed = 0.0
    while len(outcomes) < 1000 and elapsed < 60:
        reactor.advance(0.1)
        elapsed += 0.1
    assert len(outcomes) == 1000
    errors = [failure.value for failure in outcomes]
    assert all(isinstance(e, PoetryError) and e.kind == "connect-failed" for e in errors)
    assert reactor.nameResolver.lookups == 1
    assert elapsed == pytest.approx(2.0, abs=0.15)
    assert reactor.getDelayedCalls() == []


# --- processes: nothing waits for getaddrinfo -------------------------------------------------


def _start_get(log: Path, seconds: float, *args: str) -> subprocess.Popen[bytes]:
    env = subprocess_env(NETGUARD_SLOW_SECONDS=str(seconds), NETGUARD_SLOW_LOG=str(log))
    return subprocess.Popen(
        [sys.executable, "-m", "poetry_endpoints", "get", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _events(log: Path, event: str) -> int:
    if not log.exists():
        return 0
    return sum(line.startswith(f"{event} ") for line in log.read_text().splitlines())


def _wait_for_a_lookup(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while _events(log, "start") == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no lookup started"
        time.sleep(0.01)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_slow_lookup_exits_at_once(
    tmp_path: Path, signum: int, status: int
) -> None:
    log = tmp_path / "lookups.log"
    process = _start_get(log, RESOLVER_SECONDS, "-q", f"{DEAD}:80")
    try:
        _wait_for_a_lookup(process, log)
        took = time_to_exit(process, WAIT, signum)
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status
    assert took.own < PROMPT, f"exited after the signal in {took}"
    assert b"Traceback" not in stderr
    assert _events(log, "end") == 0  # the lookup was still under way


def test_a_timeout_during_a_slow_lookup_ends_the_run_at_once(tmp_path: Path) -> None:
    log = tmp_path / "lookups.log"
    process = _start_get(log, RESOLVER_SECONDS, "-q", "-t", "1", f"{DEAD}:80")
    try:
        _wait_for_a_lookup(process, log)
        took = time_to_exit(process, WAIT)
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1
    assert b"[timeout]" in stderr
    assert took.own < 1 + PROMPT, f"exited after the lookup began in {took}"
    assert _events(log, "end") == 0


def test_two_hundred_sources_on_a_dead_name_cost_one_lookup(tmp_path: Path) -> None:
    log = tmp_path / "lookups.log"
    process = _start_get(log, 1, "-q", "-c", "100", *[f"{DEAD}:80"] * 200)
    _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 200
    assert all(line.endswith("[connect-failed]") for line in lines), lines[:3]
    assert _events(log, "start") == 1
