"""
Certificate trust and verification for ``tls:`` and ``https:`` sources.

Both kinds verify the server's certificate chain against the platform's
trust store (plus a CA file when one is given) and the certificate's
subjectAltName against the host name or address connected to.  Every check
fails closed: a certificate whose identity cannot be checked at all (one
without a subjectAltName, say) is rejected, never accepted unverified.

Twisted's ``tls:`` parser only takes a directory of CAs that replaces the
platform's trust, and its verification callback lets an unexpected error in
the identity check pass (it logs it and accepts the certificate), so every
``tls:`` description is built here instead, by `tls_description_endpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    clientFromString,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS, platformTrust
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ._private_apis import (
    IOpenSSLTrustRoot,
    parse_description,
    parse_trust_root_path,
    private_cert_from_paths,
)

#: Seconds allowed to connect, as Twisted's own ``tls:`` parser defaults to.
DEFAULT_CONNECT_TIMEOUT = 30.0

#: The fields of a ``tls:`` description, in their positional order (as Twisted's).
_TLS_FIELDS = (
    "host",
    "port",
    "timeout",
    "bindAddress",
    "certificate",
    "privateKey",
    "trustRoots",
    "endpoint",
)


@implementer(IOpenSSLTrustRoot)
class PlatformTrustPlusCA:
    """
    Trust what the platform trusts, and also every certificate in one PEM file.

    Twisted's ``trustRoot`` arguments take one source of trust; a private CA
    for a test or an internal server should add to the platform's, not
    replace it.

    @raise OSError: if the file cannot be read.
    @raise ValueError: if it holds no PEM certificate.
    """

    def __init__(self, pem_path: str) -> None:
        data = Path(pem_path).read_bytes()
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ValueError(f"{pem_path}: no PEM certificate found") from None
        self.path = pem_path
        self._certificates = [crypto.X509.from_cryptography(c) for c in certificates]

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self._certificates:
            store.add_cert(certificate)


def trust_root(cacert: str | None) -> Any:
    """
    The trust for C{tls:} and C{https:} sources: the platform's, plus C{cacert}'s CAs.

    The file is read once per path and process.

    @raise OSError: if C{cacert} cannot be read.
    @raise ValueError: if it holds no PEM certificate.
    """
    return platformTrust() if cacert is None else _load(cacert)


@lru_cache(maxsize=16)
def _load(cacert: str) -> PlatformTrustPlusCA:
    return PlatformTrustPlusCA(cacert)


@implementer(IOpenSSLClientConnectionCreator)
class VerifyingCreator:
    """
    Client TLS connections that verify the chain and C{hostname}, failing closed.

    The connections are Twisted's own (`optionsForClientTLS`: its protocol
    versions, ciphers and SNI), with the verification callback replaced.

    @param hostname: the DNS name (ASCII or IDNA-encoded) or IP address
        the certificate must name.
    @param trust: an C{IOpenSSLTrustRoot}.
    """

    def __init__(
        self,
        hostname: str,
        trust: Any,
        client_certificate: PrivateCertificate | None = None,
    ) -> None:
        self._options = optionsForClientTLS(
            hostname, trustRoot=trust, clientCertificate=client_certificate
        )
        self._identity = _service_id(hostname)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """Twisted's connection for C{tlsProtocol}, with our failing-closed verify callback."""
        connection: SSL.Connection = self._options.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            _verifier(tlsProtocol, self._identity),
        )
        return connection


@implementer(IPolicyForHTTPS)
class VerifyingPolicy:
    """The HTTPS policy of `twisted.web.client.Agent`: a `VerifyingCreator` per host."""

    def __init__(self, trust: Any) -> None:
        self._trust = trust

    def creatorForNetloc(self, hostname: bytes, port: int) -> VerifyingCreator:
        """A creator that verifies the chain and C{hostname}, failing closed."""
        return VerifyingCreator(hostname.decode("ascii"), self._trust)


def tls_client_endpoint(
    reactor: Any,
    host: str,
    port: int,
    *,
    cacert: str | None = None,
    trust: Any = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    bind_address: str | None = None,
    client_certificate: PrivateCertificate | None = None,
    wrapped: IStreamClientEndpoint | None = None,
) -> IStreamClientEndpoint:
    """
    A TLS client endpoint to C{host}:C{port} that verifies C{host}.

    @param cacert: a PEM file of CAs trusted as well as the platform's.
    @param trust: an C{IOpenSSLTrustRoot} used instead of the two above.
    @param wrapped: the endpoint to carry TLS over; by default a dual-stack
        C{HostnameEndpoint} to C{host}:C{port}.
    """
    if trust is None:
        trust = trust_root(cacert)
    creator = VerifyingCreator(_ascii_host(host), trust, client_certificate)
    if wrapped is None:
        bind = None if bind_address is None else (bind_address, 0)
        wrapped = HostnameEndpoint(reactor, host, port, timeout, bind)
    return TLSOver(creator, wrapped, reactor)


@implementer(IStreamClientEndpoint)
class TLSOver:
    """
    TLS over C{wrapped}, timed by C{clock}: Twisted's C{wrapClientTLS}.

    Except that Twisted's TLS, unless told otherwise, schedules the flush
    of small writes (an HTTPS request, say) on the global reactor, where a
    client running on another reactor waits for it forever.  Twisted's
    C{Agent} does not tell it.
    """

    def __init__(
        self,
        creator: IOpenSSLClientConnectionCreator,
        wrapped: IStreamClientEndpoint,
        clock: IReactorTime,
    ) -> None:
        self._creator = creator
        self._wrappedEndpoint = wrapped
        self._clock = clock

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect C{protocolFactory}'s protocol over TLS; fires with that protocol."""
        tls = TLSMemoryBIOFactory(self._creator, True, protocolFactory, clock=self._clock)
        connecting: Deferred[Any] = self._wrappedEndpoint.connect(tls)
        return connecting.addCallback(lambda protocol: protocol.wrappedProtocol)


def tls_description_endpoint(
    reactor: Any, description: str, cacert: str | None = None
) -> IStreamClientEndpoint:
    """
    The endpoint for a C{tls:} description, verified by `VerifyingCreator`.

    Takes the fields Twisted's C{tls:} parser takes.  C{trustRoots=DIR}
    says exactly what to trust, so it replaces the platform's trust and
    C{cacert}; without it the platform's trust and C{cacert} are used.

    @raise ValueError: (or C{TypeError}, C{OSError}) for a description
        Twisted's own parser would reject too.
    """
    args, kwargs = parse_description(description)
    if args[0].lower() != "tls":
        raise ValueError(f"not a tls: description: {description!r}")
    if len(args) > len(_TLS_FIELDS) + 1:
        raise TypeError("too many positional fields")
    positional = dict(zip(_TLS_FIELDS, args[1:], strict=False))
    twice = sorted(set(positional) & set(kwargs))
    if twice:
        raise TypeError(f"given twice: {', '.join(twice)}")
    fields: dict[str, Any] = positional | kwargs
    unknown = sorted(set(fields) - set(_TLS_FIELDS))
    if unknown:
        raise TypeError(f"unrecognized fields: {', '.join(unknown)}")
    roots = fields.get("trustRoots")
    inner = fields.get("endpoint")
    return tls_client_endpoint(
        reactor,
        fields["host"],
        int(fields["port"]),
        cacert=cacert,
        trust=None if roots is None else parse_trust_root_path(roots),
        timeout=float(fields.get("timeout", DEFAULT_CONNECT_TIMEOUT)),
        bind_address=fields.get("bindAddress"),
        client_certificate=private_cert_from_paths(
            fields.get("certificate"), fields.get("privateKey")
        ),
        wrapped=None if inner is None else clientFromString(reactor, inner),
    )


def _ascii_host(host: str) -> str:
    return host if host.isascii() else host.encode("idna").decode("ascii")


def _service_id(hostname: str) -> ServiceID:
    if isIPAddress(hostname) or isIPv6Address(hostname):
        return IPAddress_ID(hostname)
    return DNS_ID(hostname)


VerifyCallback = Callable[[SSL.Connection, crypto.X509, int, int, int], bool]


def _verifier(tls_protocol: Any, identity: ServiceID) -> VerifyCallback:
    # Only a reference the callback drops once it has checked the leaf: the
    # connection holds the callback, and the protocol holds the connection.
    protocol: list[Any] = [tls_protocol]

    def verify(
        connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        if depth != 0 or not ok:
            # OpenSSL reports a broken chain itself ("certificate verify failed").
            return bool(ok)
        try:
            verify_service_identity(extract_patterns(certificate), [identity], [])
        except BaseException:
            # A mismatch (VerificationError), a certificate that names no host
            # (CertificateError) or anything unforeseen: all of them reject.
            if protocol:
                protocol.pop().failVerification(Failure())
            return False
        protocol.clear()
        return True

    return verify
