"""
``twist poetry``: the companion poetry server as a Twisted application plugin.

Shaped like ``twisted/web/tap.py``: L{Options} reads the command line (each
value checked by `poetry_endpoints.options`, as ``poetry-endpoints serve``
checks it), L{makeService} builds the service with
`poetry_endpoints.servers.service`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import MultiService
from twisted.python import usage

from .. import options
from ..defaults import DEFAULT_LISTEN, DEFAULT_NUM_BYTES
from .faults import FAULTS
from .service import ServerConfig, build_server
from .tapsupport import ListenOptions, twist_service


class Options(ListenOptions):
    """Options of ``twist poetry``."""

    default_listen = DEFAULT_LISTEN
    synopsis = "[options] [POEM_FILE...]"
    longdesc = (
        "Serve a poem per connection, then close cleanly. With no POEM_FILE the poems "
        "bundled with poetry_endpoints are served; with several, connections get them in turn."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        [
            "delay",
            None,
            0.0,
            "Seconds between writes (the slow poetry server).",
            options.for_twist("--delay", options.duration),
        ],
        [
            "num-bytes",
            None,
            DEFAULT_NUM_BYTES,
            "Bytes per write when slow.",
            options.for_twist("--num-bytes", options.count(1)),
        ],
        [
            "fault",
            None,
            None,
            f"Misbehave on purpose: one of {', '.join(FAULTS)}.",
            options.for_twist("--fault", options.fault),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["http"] = []

    def opt_http(self, description: str) -> None:
        """Also serve the poems over HTTP on this endpoint (repeatable)."""
        self["http"].append(options.for_twist("--http", options.listen)(description))

    def parseArgs(self, *poems: str) -> None:
        check = options.for_twist("POEM_FILE", options.readable_file)
        self["poems"] = tuple(check(poem) for poem in poems)

    def postOptions(self) -> None:
        self["config"] = ServerConfig(
            listen=self.listen(),
            poems=self["poems"],
            delay=self["delay"],
            num_bytes=self["num-bytes"],
            fault=self["fault"],
            http=tuple(self["http"]),
        )


def makeService(config: usage.Options) -> MultiService:
    """The companion server for parsed L{Options}."""
    return twist_service(build_server, config["config"])
