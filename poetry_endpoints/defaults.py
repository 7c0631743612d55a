"""
The client's default settings, defined once: the library, the command line
and the servers' options all take their defaults from here.
"""

from __future__ import annotations

#: The largest poem accepted, in bytes.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Seconds of silence allowed after connecting and between reads.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Downloads connected (or waiting to retry) at once.
DEFAULT_CONCURRENCY = 100
#: First retry waits this long; each later one waits twice as long as the last.
DEFAULT_BACKOFF = 0.5
#: Seconds a client's close waits for its idle HTTPS connections' servers to
#: answer the close (TLS close_notify), which a server need not do; those
#: still closing then are aborted.
DEFAULT_CLOSE_TIMEOUT = 0.5

# The servers' defaults, beside the client's so that ``serve``, ``proxy`` and
# the ``twist`` plugins read each from one place.

#: Where ``serve`` and ``twist poetry`` listen when told nowhere.
DEFAULT_LISTEN = "tcp:10000:interface=127.0.0.1"
#: Where ``proxy`` and ``twist poetry-proxy`` listen when told nowhere.
DEFAULT_PROXY_LISTEN = "tcp:10001:interface=127.0.0.1"
#: Bytes per write of the slow poetry server.
DEFAULT_NUM_BYTES = 10
#: The proxy's bounds, so that neither a stalled upstream nor clients that
#: never read can hold it for ever: the whole-fetch limit, the time a client
#: has to take its poem, and how many clients are served at once.
DEFAULT_PROXY_TIMEOUT = 120.0
DEFAULT_PROXY_WRITE_TIMEOUT = 60.0
DEFAULT_PROXY_MAX_CLIENTS = 100
#: How long the proxy serves a fetched poem again: 0, every client gets a fresh fetch.
DEFAULT_CACHE_SECONDS = 0.0
#: The largest poem the proxy keeps in memory: cached for ``--cache-seconds``,
#: and kept while it is fetched so that clients arriving meanwhile can share
#: the fetch.  Bigger poems are only streamed.
DEFAULT_PROXY_CACHE_MAX_BYTES = 1024 * 1024
