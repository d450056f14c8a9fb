"""The exception tree shared by every layer.

One base class, `AccordError`, with a human-readable `diagnostics()`; subclasses exist only where a
caller acts differently. Each class carries the HTTP status and the stable JSON `code` that the
server returns for it, so the mapping lives in one place. Messages never contain plaintext, keys,
tokens or hashes of user content.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base class of every error Accord raises on purpose."""

    http_status = 500
    code = "internal"
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def diagnostics(self) -> str:
        """One line for a person: what went wrong, without secrets."""
        return f"{self.code}: {self.message}"


class InvalidInput(AccordError):
    """Input from outside (a request, a file, a command line) is malformed or out of limits."""

    http_status = 400
    code = "invalid_input"
    default_message = "malformed input"


class TooLarge(InvalidInput):
    http_status = 413
    code = "too_large"
    default_message = "input exceeds the size limit"


class UnsupportedVersion(InvalidInput):
    code = "unsupported_version"
    default_message = "unsupported format version"


class AuthenticationError(AccordError):
    """The caller did not prove who it is."""

    http_status = 401
    code = "unauthenticated"
    default_message = "authentication required"


class AuthorizationError(AccordError):
    """The caller is known but may not do this."""

    http_status = 403
    code = "forbidden"
    default_message = "not allowed"


class NotFound(AccordError):
    """Missing, or not the caller's: the two look the same on purpose."""

    http_status = 404
    code = "not_found"
    default_message = "not found"


class Conflict(AccordError):
    http_status = 409
    code = "conflict"
    default_message = "conflicts with current state"


class RateLimited(AccordError):
    http_status = 429
    code = "rate_limited"
    default_message = "too many requests"

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 1, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class QueueFull(RateLimited):
    """A recipient device's queue is at its limit: retry once it has fetched its messages."""

    code = "queue_full"
    default_message = "a recipient's queue is full"


class LoginThrottled(RateLimited):
    """Too many failed logins for this name or address: locked out for a while."""

    code = "login_throttled"
    default_message = "too many failed logins; wait and retry"


class LoginBusy(RateLimited):
    """Every password-check slot and queue place is taken: refused before any work is done."""

    http_status = 503
    code = "login_busy"
    default_message = "too many logins at once; retry shortly"


class VerificationError(AccordError):
    """A signature, proof, commitment or MAC did not verify."""

    http_status = 422
    code = "verification_failed"
    default_message = "verification failed"


class DecryptionError(AccordError):
    """Decryption failed. Deliberately says nothing about why."""

    http_status = 422
    code = "decryption_failed"
    default_message = "decryption failed"


class ProtocolError(AccordError):
    """A peer (server or device) broke the protocol: out of order, replayed, inconsistent."""

    http_status = 422
    code = "protocol_error"
    default_message = "protocol violation"


class ServiceError(AccordError):
    """A remote service answered with an error or could not be reached."""

    http_status = 502
    code = "service_error"
    default_message = "remote service error"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status


class ConfigurationError(AccordError):
    code = "configuration"
    default_message = "invalid configuration"
