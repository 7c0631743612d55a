"""Certificate trust: the platform's store, plus an extra CA when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from OpenSSL import crypto
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.ssl import platformTrust
from zope.interface import implementer


@implementer(IOpenSSLTrustRoot)
class PlatformTrustPlusCA:
    """
    Trust what the platform trusts, and also every certificate in one PEM file.

    Twisted's ``trustRoot`` arguments take one source of trust; a private CA
    for a test or an internal server should add to the platform's, not
    replace it.
    """

    def __init__(self, pem_path: str) -> None:
        data = Path(pem_path).read_bytes()
        certificates = x509.load_pem_x509_certificates(data)
        self._certificates = [crypto.X509.from_cryptography(c) for c in certificates]

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self._certificates:
            store.add_cert(certificate)


def trust_root(cacert: str | None) -> Any:
    """The trust root for C{tls:} and C{https:} sources."""
    return platformTrust() if cacert is None else PlatformTrustPlusCA(cacert)
