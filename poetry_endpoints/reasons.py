"""Translate Twisted's failures into `PoetryError` kinds and one-line reasons."""

from __future__ import annotations

import errno

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from twisted.internet import error
from twisted.python.failure import Failure

from .errors import PoetryError


def tls_reason(failure: Failure) -> str | None:
    """The reason a TLS handshake or verification failed, or None if it is not TLS."""
    if failure.check(VerificationError):
        names = [_mismatched(error) for error in getattr(failure.value, "errors", [])]
        return f"TLS failed: the certificate is not valid for {', '.join(names) or 'this host'}"
    if failure.check(CertificateError):
        return f"TLS failed: the certificate cannot be checked ({failure.value})"
    if not failure.check(SSL.Error):
        return None
    args = getattr(failure.value, "args", ())
    details = args[0] if args else []
    if isinstance(details, list) and details:
        parts = [str(item[-1]) for item in details if isinstance(item, tuple) and item]
        if parts:
            return "TLS failed: " + "; ".join(parts)
    return f"TLS failed: {failure.value}"


def _mismatched(error: object) -> str:
    identity = getattr(error, "mismatched_id", None)
    for field in ("hostname", "ip"):
        value = getattr(identity, field, None)
        if isinstance(value, bytes):
            return value.decode("ascii", "replace")
        if value is not None:
            return str(value)
    return str(identity)


#: twisted.web's markers for a body cut short, named rather than imported:
#: every source uses this module, and only HTTP needs twisted.web.
_BODY_CUT_MARKERS = ("twisted.web.http._DataLoss", "twisted.web.http.PotentialDataLoss")


def causes(failure: Failure) -> list[Failure]:
    """
    The failures inside C{failure}, innermost first found, markers dropped.

    twisted.web wraps what really happened (a reset, a TLS error) in
    C{ResponseFailed} and friends, whose own text is a list of C{Failure}
    reprs; the markers it adds for "the body was cut short" say nothing the
    message does not already say.
    """
    inner = getattr(failure.value, "reasons", None)
    if not isinstance(inner, list) or not inner:
        return [failure]
    found: list[Failure] = []
    for reason in inner:
        if isinstance(reason, Failure) and not reason.check(*_BODY_CUT_MARKERS):
            found.extend(causes(reason))
    return found or [failure]


def describe(failure: Failure) -> str:
    """A short human description of a Twisted failure, without the class clutter."""
    inner = causes(failure)
    if inner != [failure]:
        return "; ".join(describe(cause) for cause in inner)
    value = failure.value
    text = str(value).strip()
    if isinstance(value, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, error.DNSLookupError):
        return f"name did not resolve ({text})" if text else "name did not resolve"
    if isinstance(value, error.TimeoutError):
        return "connection attempt timed out"
    if isinstance(value, error.NoRouteError):
        return "no route to host"
    if getattr(value, "osError", None) == errno.ECONNRESET:
        return "connection reset by peer"
    if isinstance(value, FileNotFoundError) or "No such file" in text:
        return "no such socket file"
    for noise in ("An error occurred while connecting: ", "Connection was refused by other side: "):
        text = text.replace(noise, "")
    return text.rstrip(".") or type(value).__name__


def connect_error(source: str, failure: Failure) -> PoetryError:
    """The error for a connection attempt that never produced a connection."""
    if isinstance(failure.value, PoetryError):
        return failure.value
    reason = tls_reason(failure)
    if reason is not None:
        return PoetryError(source, "tls", reason)
    if getattr(failure.value, "osError", None) == errno.ECONNRESET:
        # A reset refused nothing: the server accepted, then reset before the
        # reactor saw the connection made (the kernel drops what it had sent).
        return lost_error(source, failure, 0)
    return PoetryError(source, "connect-failed", f"could not connect: {describe(failure)}")


def lost_error(source: str, failure: Failure, received: int) -> PoetryError:
    """The error for a connection that ended other than by a clean close."""
    for cause in causes(failure):
        reason = tls_reason(cause)
        if reason is not None:
            return PoetryError(source, "tls", reason)
    return PoetryError(
        source,
        "incomplete",
        f"connection lost after {received} bytes ({describe(failure)}); poem incomplete",
    )
