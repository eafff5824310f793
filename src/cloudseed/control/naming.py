"""Host names: derive one from a server name as Nova does, or check a given one.

Nova's ``sanitize_hostname`` (``nova/utils.py``) maps spaces, underscores and
dots to hyphens, drops everything else that is not a word character, lower-
cases, strips leading/trailing dots and hyphens, and truncates to 63. We do
the same but keep only ASCII, because a guest's ``hostname`` command and DNS
only accept RFC 1123 names; when nothing is left, we fall back to
``server-<uuid>`` as Nova falls back to its default display name.
"""

from __future__ import annotations

import re

from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.limits import MAX_HOSTNAME_CHARS, MAX_HOSTNAME_LABEL_CHARS

_SEPARATORS = re.compile(r"[ _.]")
_NOT_HOSTNAME = re.compile(r"[^a-z0-9-]+")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def hostname_from_name(name: str, server_id: str) -> str:
    """The host name Nova would give a server called ``name``."""
    host = _SEPARATORS.sub("-", name[:MAX_HOSTNAME_LABEL_CHARS]).lower()
    host = _NOT_HOSTNAME.sub("", host).strip(".-")
    return host or f"server-{server_id}"[:MAX_HOSTNAME_LABEL_CHARS].rstrip("-")


def check_hostname(hostname: str, field: str = "hostname") -> str:
    """An RFC 1123 host name (a single label or an FQDN), lower-cased."""
    host = hostname.lower().rstrip(".")
    if len(host) > MAX_HOSTNAME_CHARS:
        raise LimitExceeded(
            field, MAX_HOSTNAME_CHARS, f"longer than {MAX_HOSTNAME_CHARS} characters"
        )
    if not host:
        raise Invalid(field, "must not be empty")
    for label in host.split("."):
        if len(label) > MAX_HOSTNAME_LABEL_CHARS:
            raise LimitExceeded(
                field,
                MAX_HOSTNAME_LABEL_CHARS,
                f"label {label!r} is longer than {MAX_HOSTNAME_LABEL_CHARS} characters (RFC 1123)",
            )
        if not _LABEL.match(label):
            raise Invalid(
                field,
                f"label {label!r} must be letters, digits and inner hyphens (RFC 1123)",
            )
    return host
