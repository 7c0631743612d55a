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
#: The largest poem the proxy keeps in memory: cached for ``--cache-seconds``,
#: and kept while it is fetched so that clients arriving meanwhile can share
#: the fetch.  Bigger poems are only streamed.
DEFAULT_PROXY_CACHE_MAX_BYTES = 1024 * 1024
