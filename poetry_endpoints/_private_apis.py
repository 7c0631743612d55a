"""
Every private API of Twisted and the standard library this package relies on, in one place.

Each one is used because no public API does the job (the comment on each
says what is missing).  A private name may be renamed or removed by any
release without a deprecation period, and most of these would then fail
silently (the head cap would stop capping, a cancelled body would close
gently instead of being cut), so this module checks at import that each
attribute still exists and refuses to load otherwise, with a message naming
what is missing and the versions installed.  ``tests/test_private_apis.py``
checks the behaviour each one is relied on for, which the import check
cannot see.

Attributes that only exist on instances (set in ``__init__``) cannot be
checked here; their behaviour is tested instead.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Iterable
from typing import Any

from twisted.internet import _sslverify
from twisted.internet import endpoints as _endpoints
from twisted.web import _newclient
from twisted.web import client as _web_client
from twisted.web import http as _web_http

import twisted

__all__ = [
    "HEADER",
    "STATUS",
    "DataLoss",
    "HTTP11ClientFactory",
    "HTTP11ClientProtocol",
    "IOpenSSLTrustRoot",
    "IdentityTransferDecoder",
    "MissingPrivateAPI",
    "body_connection",
    "cached_connections",
    "endpoint_address",
    "is_text_encoding",
    "parse_description",
    "parse_trust_root_path",
    "private_cert_from_paths",
    "use_connection_factory",
]


class MissingPrivateAPI(ImportError):
    """An installed Twisted (or Python) lacks a private API this package needs."""


# (object, its dotted name for a message, attribute, why we need it)
_REQUIRED: list[tuple[object, str, str, str]] = [
    # The HTTP/1.1 client connection is subclassed to cap a response's head
    # (twisted.web sets no limit and offers no hook) and to learn why the
    # connection ended (the body protocol is only told PotentialDataLoss).
    (_newclient, "twisted.web._newclient", "HTTP11ClientProtocol", "the head cap"),
    (_newclient, "twisted.web._newclient", "STATUS", "the head cap"),
    (_newclient, "twisted.web._newclient", "HEADER", "the head cap"),
    # A body's transport only closes gently; the connection it wraps aborts.
    (_newclient, "twisted.web._newclient", "TransportProxyProducer", "aborting a body"),
    (
        _newclient.TransportProxyProducer(None)
        if hasattr(_newclient, "TransportProxyProducer")
        else None,
        "twisted.web._newclient.TransportProxyProducer",
        "_producer",
        "aborting a body",
    ),
    (
        getattr(_newclient, "HTTP11ClientProtocol", None),
        "twisted.web._newclient.HTTP11ClientProtocol",
        "_giveUp",
        "the head cap",
    ),
    (
        getattr(_newclient, "HTTP11ClientProtocol", None),
        "twisted.web._newclient.HTTP11ClientProtocol",
        "_disconnectParser",
        "telling a cut body from a whole one",
    ),
    (
        getattr(_newclient, "HTTP11ClientProtocol", None),
        "twisted.web._newclient.HTTP11ClientProtocol",
        "_parser",
        "the head cap",
    ),
    # The connection pool has no public way to choose the protocol it builds.
    (_web_client, "twisted.web.client", "_HTTP11ClientFactory", "the head cap"),
    (
        _web_client.HTTPConnectionPool,
        "twisted.web.client.HTTPConnectionPool",
        "_factory",
        "the head cap",
    ),
    (_web_http, "twisted.web.http", "_DataLoss", "telling a cut body from a whole one"),
    (
        _web_http,
        "twisted.web.http",
        "_IdentityTransferDecoder",
        "telling a cut body from a whole one",
    ),
    # Twisted's own description tokenizer and tls: field parsers, so that
    # our tls: descriptions take exactly the syntax Twisted's do.
    (_endpoints, "twisted.internet.endpoints", "_parse", "parsing endpoint descriptions"),
    (_endpoints, "twisted.internet.endpoints", "_parseTrustRootPath", "tls: trustRoots="),
    (_endpoints, "twisted.internet.endpoints", "_privateCertFromPaths", "tls: certificate="),
    # The interface of a trust root (what optionsForClientTLS's trustRoot=
    # takes), which twisted.internet.ssl and interfaces do not export.
    (_sslverify, "twisted.internet._sslverify", "IOpenSSLTrustRoot", "--cacert"),
    # Overridden so that "--opt=--" is a usage error on Python before 3.12.
    (argparse.ArgumentParser, "argparse.ArgumentParser", "_get_values", "refusing --opt=--"),
    # The only way to tell a text encoding from a bytes-to-bytes codec.
    (codecs.lookup("utf-8"), "codecs.CodecInfo", "_is_text_encoding", "--encoding"),
]


def _installed(name: str) -> str:
    # Imported here, for the message only: importlib.metadata is a start-up
    # cost every import of this module would otherwise pay.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - not installed from a distribution
        return "unknown"


def _check(required: Iterable[tuple[object, str, str, str]]) -> None:
    """
    Raise L{MissingPrivateAPI} naming every entry of C{required} that is missing.
    """
    missing = [
        f"{owner_name}.{attribute} ({why})"
        for owner, owner_name, attribute, why in required
        if owner is None or not hasattr(owner, attribute)
    ]
    if missing:
        raise MissingPrivateAPI(
            "poetry_endpoints relies on private APIs that this installation lacks: "
            f"{', '.join(missing)}; installed: Twisted {twisted.__version__}, "
            f"treq {_installed('treq')}, Python {sys.version.split()[0]}. "
            "Install a Twisted release poetry_endpoints supports (see its pyproject.toml)."
        )


_check(_REQUIRED)

# Only reached when every name above exists.
HTTP11ClientProtocol = _newclient.HTTP11ClientProtocol
STATUS = _newclient.STATUS
HEADER = _newclient.HEADER
HTTP11ClientFactory = _web_client._HTTP11ClientFactory
DataLoss = _web_http._DataLoss
IdentityTransferDecoder = _web_http._IdentityTransferDecoder
IOpenSSLTrustRoot = _sslverify.IOpenSSLTrustRoot


def parse_description(description: str) -> tuple[list[Any], dict[str, Any]]:
    """
    Twisted's own split of an endpoint description into positional and keyword fields.

    Twisted exposes it only through clientFromString/serverFromString,
    which also build the endpoint.
    """
    args, kwargs = _endpoints._parse(description)
    return list(args), dict(kwargs)


def parse_trust_root_path(path: str) -> Any:
    """The trust root for a C{tls:} description's C{trustRoots=} directory."""
    return _endpoints._parseTrustRootPath(path)


def private_cert_from_paths(certificate: str | None, key: str | None) -> Any:
    """The client certificate for a C{tls:} description's C{certificate=}/C{privateKey=}."""
    return _endpoints._privateCertFromPaths(certificate, key)


def use_connection_factory(
    pool: _web_client.HTTPConnectionPool, factory: type[_web_client._HTTP11ClientFactory]
) -> None:
    """Make C{pool} build its connections with C{factory} (an C{HTTP11ClientFactory})."""
    pool._factory = factory


def body_connection(transport: object) -> object | None:
    """
    The connection under a response body's transport, or None.

    The transport a body protocol is given is a proxy whose stopProducing
    only closes gently, after the request; the connection it wraps can be
    aborted.
    """
    return getattr(transport, "_producer", None)


def cached_connections(pool: _web_client.HTTPConnectionPool) -> list[Any]:
    """
    The idle connections (C{HTTP11ClientProtocol}s) C{pool} keeps for reuse.

    C{closeCachedConnections} closes them gently, which over TLS waits for
    the server to answer the close, and offers no way to abort the ones it
    is still waiting for.
    """
    return [protocol for kept in pool._connections.values() for protocol in kept]


def endpoint_address(endpoint: object) -> tuple[object, object, object]:
    """
    The (host, port, UNIX path) an endpoint object was made for, None where unknown.

    Twisted's endpoints keep them in private attributes and offer no
    accessor; a rename only makes a name less readable (see
    L{poetry_endpoints.sources.describe_endpoint}).
    """
    host = getattr(endpoint, "_hostText", None) or getattr(endpoint, "_host", None)
    return host, getattr(endpoint, "_port", None), getattr(endpoint, "_path", None)


def is_text_encoding(info: codecs.CodecInfo) -> bool:
    """Whether the codec C{info} decodes bytes to text (not, say, base64 or zlib)."""
    return bool(info._is_text_encoding)
