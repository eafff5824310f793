"""The guest password channel (Nova's ``password.py``), write-once.

GET answers the stored value (200 with an empty body when none is set) from
the rendered tree. POST stores the body if no password is set yet; the
store's ``set_password_once`` decides atomically, across processes and hosts,
so of two racing POSTs exactly one gets 200 and the other 409 -- Nova checks
its 15-second cache instead and can let both through. Any other method is
400, with Nova's wording.
"""

from __future__ import annotations

from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.http.message import Request
from cloudseed.limits import PASSWORD_MAX_BYTES

ALLOWED_METHODS = ("GET", "HEAD", "POST")
METHODS_MESSAGE = "GET and POST only are supported."
TOO_LARGE_MESSAGE = "Request is too large."


def check_method(method: str) -> None:
    if method not in ALLOWED_METHODS:
        raise Invalid("method", METHODS_MESSAGE)


def password_from_post(request: Request) -> str:
    """The password a POST carries; LimitExceeded above 1020 bytes (400)."""
    declared = request.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > PASSWORD_MAX_BYTES:
        raise LimitExceeded("password", PASSWORD_MAX_BYTES, TOO_LARGE_MESSAGE)
    if len(request.body) > PASSWORD_MAX_BYTES:
        raise LimitExceeded("password", PASSWORD_MAX_BYTES, TOO_LARGE_MESSAGE)
    try:
        return request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("password", "must be UTF-8 text") from None
