"""
TLS servers on loopback, run as a subprocess by the CLI tests.

    python tests/tls_servers.py GOOD_CERT GOOD_KEY WRONG_CERT WRONG_KEY

Prints ``listening on SOURCE`` for, in order: an HTTPS poem site and a TLS
poetry server presenting the good certificate, the same two presenting the
wrong one, and a plain TCP poetry server.  Runs until SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.ssl import PrivateCertificate

from poetry_endpoints.servers.poetry import PoetryServerFactory, bundled_poems
from poetry_endpoints.servers.web import listening_url, make_site

reactor: Any = _reactor


def main(good_cert: str, good_key: str, wrong_cert: str, wrong_key: str) -> None:
    poems = bundled_poems()
    for cert, key in ((good_cert, good_key), (wrong_cert, wrong_key)):
        options = PrivateCertificate.loadPEM(
            Path(cert).read_bytes() + Path(key).read_bytes()
        ).options()
        https = reactor.listenSSL(0, make_site(poems), options, interface="127.0.0.1")
        print(f"listening on {listening_url(https, tls=True)}")
        tls = reactor.listenSSL(
            0, PoetryServerFactory(poems, reactor), options, interface="127.0.0.1"
        )
        print(f"listening on tls:localhost:{tls.getHost().port}")
    tcp = reactor.listenTCP(0, PoetryServerFactory(poems, reactor), interface="127.0.0.1")
    print(f"listening on tcp:127.0.0.1:{tcp.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:5])
