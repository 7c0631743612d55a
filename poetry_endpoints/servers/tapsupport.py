"""
What the ``twist`` plugins (``tap.py``, ``proxytap.py``) share: the
repeatable ``--listen`` option and turning a built service into one that
behaves under ``twist``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

from twisted.application.service import MultiService, Service
from twisted.python import usage
from twisted.python.failure import Failure

from .. import options
from .service import ConfigError, when_listening

C = TypeVar("C")

#: ``twist`` exits 1 when a listener cannot listen, as ``serve`` does.
CANNOT_LISTEN_STATUS: Final = 1


class ListenOptions(usage.Options):
    """Shared ``--listen``: repeatable, replacing the default when given."""

    default_listen: str = ""

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Endpoint description to listen on (repeatable)."""
        self["listen"].append(options.for_twist("--listen", options.listen)(description))

    opt_l = opt_listen

    def listen(self) -> tuple[str, ...]:
        """The descriptions given, or the default one."""
        return tuple(self["listen"]) or (self.default_listen,)


def twist_service(build: Callable[[Any, C], MultiService], config: C) -> MultiService:
    """
    C{build(reactor, config)} for ``twist``: a setting that fails only once
    built is a usage error (exit 64, one line), and a listener that cannot
    listen stops the process with status 1.
    """
    from twisted.internet import reactor

    return _stop_unless_listening(reactor, _or_exit(build, reactor, config))


def _stop_unless_listening(reactor: Any, service: MultiService) -> MultiService:
    # Under twist a listener that cannot listen would otherwise leave a
    # process running that serves nothing; the reason is already logged.
    def give_up(failure: Failure) -> None:
        reactor.addSystemEventTrigger("after", "shutdown", _exit_after_shutdown)
        reactor.callWhenRunning(reactor.stop)

    class _Watch(Service):
        def startService(self) -> None:
            Service.startService(self)
            when_listening(service).addErrback(give_up)

    service.addService(_Watch())
    return service


def _exit_after_shutdown() -> None:
    # twist and twistd have no way for a service to set the exit status
    # (twisted/twisted#11335), and they catch SystemExit raised while the
    # reactor runs.  By the "after" phase of shutdown every service has
    # stopped (Unix socket files are removed, the log is written), so the
    # process ends here, with a status a supervisor reads as a failure, as
    # ``twist web`` does when its port is taken.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream has nothing left to flush
    os._exit(CANNOT_LISTEN_STATUS)


def _or_exit(build: Callable[[Any, C], MultiService], reactor: Any, config: C) -> MultiService:
    # twist turns a UsageError from option parsing into a message and exit
    # status 64, but lets one from makeService escape as a traceback; settings
    # that only fail once built (a poem file read between the two) are usage
    # errors all the same.
    try:
        return build(reactor, config)
    except ConfigError as e:
        sys.stderr.write(f"Error: {e}\n")
        raise SystemExit(os.EX_USAGE) from None
