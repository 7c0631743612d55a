"""
Certificates made at test time: a private CA and the certificates it signs.

Nothing here is committed: every key is generated into a temporary directory
by the test that needs it.  EC P-256 keys keep generation fast.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.ssl import CertificateOptions, PrivateCertificate

#: The names a loopback server answers to, as the tests reach it.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path

    def server_options(self) -> CertificateOptions:
        """Server-side TLS options presenting this certificate."""
        pem = self.cert.read_bytes() + self.key.read_bytes()
        return PrivateCertificate.loadPEM(pem).options()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CA:
    """A certificate authority whose PEM is C{cert}; signs server certificates."""

    cert: Path
    _key: ec.EllipticCurvePrivateKey
    _certificate: x509.Certificate
    _directory: Path

    def issue(self, stem: str, names: tuple[str, ...] = LOOPBACK_NAMES) -> Issued:
        """
        A server certificate for C{names} (DNS names or IP literals).

        With no names it has no subjectAltName at all, only a common name of
        C{localhost}, which verifiers must not rely on.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        common_name = names[0] if names else "localhost"
        builder = _builder(common_name, key, names).issuer_name(self._certificate.subject)
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
            critical=False,
        )
        certificate = builder.sign(self._key, hashes.SHA256())
        return _write(self._directory, stem, certificate, key)


def make_ca(directory: Path, name: str = "poetry test CA") -> CA:
    """A fresh CA in C{directory}; only its certificate is written out."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{_slug(name)}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return CA(path, key, certificate, directory)


def self_signed(directory: Path, stem: str, names: tuple[str, ...] = LOOPBACK_NAMES) -> Issued:
    """A server certificate that signs itself: trusted by nobody."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(names[0], key, names)
    builder = builder.issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    return _write(directory, stem, builder.sign(key, hashes.SHA256()), key)


def _builder(
    common_name: str, key: ec.EllipticCurvePrivateKey, names: tuple[str, ...]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + _ONE_DAY)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return builder


def _write(
    directory: Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_path, key_path)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)
