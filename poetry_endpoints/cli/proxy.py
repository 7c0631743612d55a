"""``poetry-endpoints proxy``: serve each connection the poem streamed from an upstream source."""

from __future__ import annotations

import argparse
from typing import Any

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
from ..servers.service import ProxyConfig, build_proxy
from .serve import add_listen_option, run_listening


def add_parser(commands: Any) -> None:
    """Register the ``proxy`` subcommand."""
    parser = commands.add_parser(
        "proxy",
        help="serve poems streamed from an upstream source",
        description="Listen on endpoints and serve each connection the poem streamed from "
        "the upstream SOURCE (tcp:, unix:, tls:, http(s)://, HOST:PORT...) as it arrives; a "
        "poem of at most --cache-max-bytes is cached for --cache-seconds. When the upstream "
        "fails, even mid-poem, a TCP connection is aborted (RST), never closed cleanly, so "
        "clients see an incomplete poem rather than a short one (a Unix socket has no reset: "
        "there the client sees the poem cut short).",
    )
    add_listen_option(parser, DEFAULT_PROXY_LISTEN)
    parser.add_argument(
        "-u",
        "--upstream",
        required=True,
        type=options.for_argparse(options.upstream),
        metavar="SOURCE",
        help="where the poems come from",
    )
    parser.add_argument(
        "--cache-seconds",
        type=options.for_argparse(options.duration),
        default=DEFAULT_CACHE_SECONDS,
        metavar="N",
        help="serve a fetched poem of at most --cache-max-bytes again for N seconds; 0: "
        "fetch for every connection, connections during one fetch sharing it "
        f"(default: {DEFAULT_CACHE_SECONDS:g})",
    )
    parser.add_argument(
        "--cache-max-bytes",
        type=options.for_argparse(options.size_from_0),
        default=DEFAULT_PROXY_CACHE_MAX_BYTES,
        metavar="SIZE",
        help="the largest poem kept in memory (bytes, or with a K, M or G suffix): cached "
        "for --cache-seconds, and shared with clients that arrive during its fetch; bigger "
        "poems are streamed to each fetch's clients only; 0: keep nothing "
        f"(default: {DEFAULT_PROXY_CACHE_MAX_BYTES})",
    )
    parser.add_argument(
        "--max-bytes",
        type=options.for_argparse(options.size),
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help=f"largest upstream poem relayed: {options.SIZE_FORMS}; past it the fetch fails "
        "as too-large and its clients are reset, so that none takes the part relayed for a "
        f"whole poem (default: {DEFAULT_MAX_BYTES // 2**20}M)",
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=options.for_argparse(options.timeout),
        default=DEFAULT_PROXY_TIMEOUT,
        metavar="SECONDS",
        help="whole-attempt limit per upstream fetch, so that an upstream sending a byte now "
        f"and then cannot hold the clients for ever; 0 or none for no limit "
        f"(default: {DEFAULT_PROXY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=options.for_argparse(options.timeout),
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="limit on upstream silence between reads; 0 or none for no limit "
        f"(default: {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--cacert",
        type=options.for_argparse(options.pem_file),
        metavar="PEM",
        help="also trust this CA for tls: and https: upstreams",
    )
    parser.add_argument(
        "--write-timeout",
        type=options.for_argparse(options.timeout),
        default=DEFAULT_PROXY_WRITE_TIMEOUT,
        metavar="SECONDS",
        help="seconds a client may leave bytes untaken (its send buffer full, or the end of "
        "the poem unsent) before it is reset, so that a stalled client holds neither memory "
        "nor the other clients of its fetch; 0 or none for no limit "
        f"(default: {DEFAULT_PROXY_WRITE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-clients",
        type=options.for_argparse(options.count_or_none),
        default=DEFAULT_PROXY_MAX_CLIENTS,
        metavar="N",
        help="clients served at once, all listeners together; further clients wait to be "
        "accepted until one is done; memory grows with N times a send buffer (and, for "
        "clients that join a fetch late, up to --cache-max-bytes each), not with the poem "
        f"size; 'none' for no limit (default: {DEFAULT_PROXY_MAX_CLIENTS})",
    )


def run(args: argparse.Namespace, *, reactor: Any = None) -> int:
    """Proxy on C{reactor} until SIGINT or SIGTERM; the exit status."""
    config = proxy_config(args)
    return run_listening("proxy", lambda r: build_proxy(r, config), reactor=reactor)


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    """The proxy's settings from its parsed command line."""
    return ProxyConfig(
        upstream=args.upstream,
        listen=tuple(args.listen) or (DEFAULT_PROXY_LISTEN,),
        cache_seconds=args.cache_seconds,
        cache_max_bytes=args.cache_max_bytes,
        max_bytes=args.max_bytes,
        timeout=args.timeout,
        idle_timeout=args.idle_timeout,
        cacert=args.cacert,
        write_timeout=args.write_timeout,
        max_clients=args.max_clients,
    )
