"""The one place where domain errors become HTTP statuses.

Every class in ``cloudseed.errors`` has a row here (a test walks the module
and checks). Subclasses not listed inherit their parent's row through the
MRO walk in ``status_for``.
"""

from __future__ import annotations

import json

from cloudseed import errors
from cloudseed.http.message import Response

STATUS_BY_ERROR: dict[type[errors.CloudseedError], int] = {
    errors.CloudseedError: 500,
    errors.NotFound: 404,
    errors.Invalid: 400,
    errors.LimitExceeded: 400,
    errors.Conflict: 409,
    errors.AlreadySet: 409,
    errors.AuthMissing: 401,
    errors.AuthRejected: 403,
    errors.IdentityMissing: 400,
    errors.SignatureInvalid: 403,
    errors.TokenRequired: 401,
    errors.EndpointDisabled: 403,
    errors.Forbidden: 403,
    errors.MethodNotAllowed: 405,
    errors.PayloadTooLarge: 413,
    errors.RateLimited: 429,
    errors.UpstreamUnavailable: 503,
    errors.UpstreamTimeout: 504,
    errors.StoreUnavailable: 503,
    errors.NotLoaded: 503,
    errors.ConfigError: 500,
}


def status_for(error: errors.CloudseedError) -> int:
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def _extra_headers(error: errors.CloudseedError) -> list[tuple[str, str]]:
    if isinstance(error, errors.MethodNotAllowed):
        return [("Allow", ", ".join(error.allowed))]
    if isinstance(error, errors.RateLimited | errors.StoreUnavailable):
        return [("Retry-After", str(error.retry_after_seconds))]
    if isinstance(error, errors.AuthMissing):
        return [("WWW-Authenticate", "Bearer")]
    return []


def error_response_text(error: errors.CloudseedError) -> Response:
    """For guests: a short text/plain body, as Nova and EC2 answer."""
    body = (error.message + "\n").encode()
    return Response(status_for(error), body, _extra_headers(error))


def error_response_json(error: errors.CloudseedError) -> Response:
    """For the control API: a JSON body naming the field and the limit."""
    body = json.dumps(error.to_dict()).encode()
    return Response(status_for(error), body, _extra_headers(error), content_type="application/json")
