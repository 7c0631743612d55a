"""
``twist poetry-proxy``: the poetry proxy as a Twisted application plugin.

Shaped like ``twisted/web/tap.py``: L{Options} reads the command line (each
value checked by `poetry_endpoints.options`, as ``poetry-endpoints proxy``
checks it), L{makeService} builds the service with
`poetry_endpoints.servers.service`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import MultiService
from twisted.python import usage

from .. import options
from ..defaults import (
    DEFAULT_CACHE_SECONDS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES,
    DEFAULT_PROXY_CACHE_MAX_BYTES,
    DEFAULT_PROXY_LISTEN,
    DEFAULT_PROXY_MAX_CLIENTS,
    DEFAULT_PROXY_TIMEOUT,
    DEFAULT_PROXY_WRITE_TIMEOUT,
)
from .service import ProxyConfig, build_proxy
from .tapsupport import ListenOptions, twist_service


class Options(ListenOptions):
    """Options of ``twist poetry-proxy``."""

    default_listen = DEFAULT_PROXY_LISTEN
    synopsis = "--upstream SOURCE [options]"
    longdesc = (
        "Serve each connection the poem streamed from an upstream source (tcp:, unix:, tls:, "
        "http(s):// ...) as it arrives; a poem of at most --cache-max-bytes is cached for "
        "--cache-seconds. When the upstream fails, even mid-poem, the connection is aborted "
        "rather than closed, so clients never take a partial poem for a whole one. "
        "The slowest client paces the upstream; clients that stop reading are bounded by "
        "--write-timeout and --max-clients. "
        "Every timeout takes 0 or none for no limit."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        [
            "upstream",
            "u",
            None,
            "Source string the poems are fetched from (required).",
            options.for_twist("--upstream", options.upstream),
        ],
        [
            "cache-seconds",
            None,
            DEFAULT_CACHE_SECONDS,
            "Serve a fetched poem of at most --cache-max-bytes again for this long (0: no cache).",
            options.for_twist("--cache-seconds", options.duration),
        ],
        [
            "cache-max-bytes",
            None,
            DEFAULT_PROXY_CACHE_MAX_BYTES,
            "The largest poem kept in memory (bytes, or with a K, M or G suffix): cached "
            "for --cache-seconds and shared with clients that arrive during its fetch; "
            "bigger poems are streamed to each fetch's clients only; 0: keep nothing.",
            options.for_twist("--cache-max-bytes", options.size_from_0),
        ],
        [
            "max-bytes",
            None,
            DEFAULT_MAX_BYTES,
            "Largest upstream poem relayed (bytes, or with a K, M or G suffix); past it the "
            "fetch fails as too-large and its clients are reset.",
            options.for_twist("--max-bytes", options.size),
        ],
        [
            "timeout",
            "t",
            DEFAULT_PROXY_TIMEOUT,
            "Whole-attempt limit per upstream fetch, seconds; 0 or none: no limit.",
            options.for_twist("--timeout", options.timeout),
        ],
        [
            "idle-timeout",
            None,
            DEFAULT_IDLE_TIMEOUT,
            "Limit on upstream silence, seconds; 0 or none: no limit.",
            options.for_twist("--idle-timeout", options.timeout),
        ],
        [
            "cacert",
            None,
            None,
            "Also trust this CA (PEM) for tls: and https: upstreams.",
            options.for_twist("--cacert", options.pem_file),
        ],
        [
            "write-timeout",
            None,
            DEFAULT_PROXY_WRITE_TIMEOUT,
            "Seconds a client may leave bytes untaken (its send buffer full, or the end of "
            "the poem unsent) before it is reset; 0 or none: no limit.",
            options.for_twist("--write-timeout", options.timeout),
        ],
        [
            "max-clients",
            None,
            DEFAULT_PROXY_MAX_CLIENTS,
            "Clients served at once, all listeners together; the others wait to be "
            "accepted. Memory grows with this times a send buffer, not with the poem size. "
            "A number, or none for no limit.",
            options.for_twist("--max-clients", options.count_or_none),
        ],
    ]

    def postOptions(self) -> None:
        if not self["upstream"]:
            raise usage.UsageError("--upstream SOURCE is required")
        self["config"] = ProxyConfig(
            upstream=self["upstream"],
            listen=self.listen(),
            cache_seconds=self["cache-seconds"],
            cache_max_bytes=self["cache-max-bytes"],
            max_bytes=self["max-bytes"],
            timeout=self["timeout"],
            idle_timeout=self["idle-timeout"],
            cacert=self["cacert"],
            write_timeout=self["write-timeout"],
            max_clients=self["max-clients"],
        )


def makeService(config: usage.Options) -> MultiService:
    """The poetry proxy for parsed L{Options}."""
    return twist_service(build_proxy, config["config"])
