"""Domain errors: what went wrong, with the data to explain it.

Errors carry facts (which field, which limit, which resource), never HTTP
status codes. The single mapping from these classes to statuses lives in
``cloudseed.http.status``; a test checks that every class here is mapped.

    CloudseedError
    ├── NotFound                 a resource or path does not exist
    ├── Invalid                  input breaks a rule (field + reason)
    │   └── LimitExceeded        input is over a named limit
    ├── Conflict                 input clashes with stored state (unique, in use)
    ├── AlreadySet               a write-once value was written before
    ├── AuthMissing              no credentials where they are required
    ├── AuthRejected             credentials present but wrong
    ├── IdentityMissing          a guest request lacks identity headers (400)
    ├── SignatureInvalid         the proxy signature does not match (403)
    ├── TokenRequired            an IMDS session token is required but absent/invalid (401)
    ├── EndpointDisabled         the metadata endpoint is off for this server (403)
    ├── Forbidden                the request is understood and refused
    ├── MethodNotAllowed         wrong HTTP method (carries the allowed ones)
    ├── PayloadTooLarge          request body over its limit
    ├── RateLimited              too many requests (carries retry-after seconds)
    ├── UpstreamUnavailable      the next tier cannot be reached
    ├── UpstreamTimeout          the next tier did not answer in time
    ├── StoreUnavailable         the database cannot be reached (carries retry-after)
    │   └── NotLoaded            what the tier serves is not loaded from the store yet (starting)
    └── ConfigError              settings are inconsistent; refuse to start
"""

from __future__ import annotations


class CloudseedError(Exception):
    """Base of every error cloudseed raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message}


class NotFound(CloudseedError):
    def __init__(self, kind: str, key: str, message: str | None = None) -> None:
        super().__init__(message or f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "kind": self.kind, "key": self.key}


class Invalid(CloudseedError):
    """Input breaks a rule. ``field`` is a dotted path into the request body."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "field": self.field, "reason": self.reason}


class LimitExceeded(Invalid):
    def __init__(self, field: str, limit: int | str, reason: str) -> None:
        super().__init__(field, reason)
        self.limit = limit

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "limit": self.limit}


class Conflict(CloudseedError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "field": self.field, "reason": self.reason}


class AlreadySet(CloudseedError):
    pass


class AuthMissing(CloudseedError):
    pass


class AuthRejected(CloudseedError):
    pass


class IdentityMissing(CloudseedError):
    pass


class SignatureInvalid(CloudseedError):
    pass


class TokenRequired(CloudseedError):
    pass


class EndpointDisabled(CloudseedError):
    pass


class Forbidden(CloudseedError):
    pass


class MethodNotAllowed(CloudseedError):
    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method {method} not allowed; use {', '.join(allowed)}")
        self.method = method
        self.allowed = allowed


class PayloadTooLarge(CloudseedError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class RateLimited(CloudseedError):
    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        super().__init__(message or f"too many requests; retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class UpstreamUnavailable(CloudseedError):
    pass


class UpstreamTimeout(CloudseedError):
    pass


class ConfigError(CloudseedError):
    pass


class StoreUnavailable(CloudseedError):
    """The database cannot be reached; nothing was written. Try again after the delay."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class NotLoaded(StoreUnavailable):
    """The tier is starting and has not yet loaded what it answers from; try again shortly."""
