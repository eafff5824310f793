"""cloud-init's ``phone_home`` POST: host keys and "booted", as the guest sends it.

cloud-init (``cc_phone_home``, 22.4 and later) POSTs form-encoded
``instance_id``, ``hostname``, ``fqdn`` and ``pub_key_{dsa,rsa,ecdsa,ed25519}``
to the configured URL, with ``$INSTANCE_ID`` in that URL replaced. A key it
could not read is the literal ``N/A``. The server is identified by the request
chain (or the direct-mode source address), never by the body: an
``instance_id`` -- in the body or as the URL's last segment -- naming anything
but this server (its UUID or its EC2 ``i-%08x`` id) is refused.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from cloudseed.errors import Forbidden, Invalid, LimitExceeded
from cloudseed.http.message import Request
from cloudseed.limits import (
    MAX_HOSTNAME_CHARS,
    PHONE_HOME_MAX_BYTES,
    PHONE_HOME_MAX_KEY_CHARS,
)
from cloudseed.model import PhoneHome

# cloud-init's placeholder for a value it could not read.
NOT_AVAILABLE = "N/A"
# Form field → the key types it may hold (first word of the key line).
KEY_TYPES = {
    "pub_key_rsa": ("ssh-rsa",),
    "pub_key_ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "pub_key_ed25519": ("ssh-ed25519",),
}
# Fields cloud-init may send that cloudseed does not keep (DSA is obsolete).
IGNORED_FIELDS = frozenset({"pub_key_dsa"})
KNOWN_FIELDS = frozenset({"instance_id", "hostname", "fqdn"}) | set(KEY_TYPES) | IGNORED_FIELDS
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class InstanceMismatch(Forbidden):
    """The body (or URL) names another instance than the identified server."""


def read_form(request: Request) -> dict[str, str]:
    """The POST's fields; 413-style LimitExceeded, Invalid naming the field."""
    declared = request.header("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > PHONE_HOME_MAX_BYTES
    if too_big or len(request.body) > PHONE_HOME_MAX_BYTES:
        raise LimitExceeded("body", PHONE_HOME_MAX_BYTES, "the phone-home body is too large")
    try:
        text = request.body.decode("ascii")
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=len(KNOWN_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise Invalid("body", "must be application/x-www-form-urlencoded ASCII") from None
    form: dict[str, str] = {}
    for name, values in parsed.items():
        if name not in KNOWN_FIELDS:
            raise Invalid(name, "is not a phone_home field")
        if len(values) != 1:
            raise Invalid(name, "must appear once")
        form[name] = values[0]
    return form


def check_instance(claimed: str, server_id: str, ec2_instance_id: str) -> None:
    if claimed and claimed != NOT_AVAILABLE and claimed not in {server_id, ec2_instance_id}:
        raise InstanceMismatch("instance_id names another instance than this server")


def report_from_form(form: dict[str, str], server_id: str) -> PhoneHome:
    keys = {field: _host_key(field, form.get(field, "")) for field in KEY_TYPES}
    return PhoneHome(
        server_id=server_id,
        booted_at="",  # the store's clock decides
        hostname=_name("hostname", form.get("hostname", "")),
        fqdn=_name("fqdn", form.get("fqdn", "")),
        **keys,
    )


def _name(field: str, value: str) -> str:
    if value == NOT_AVAILABLE:
        return ""
    if len(value) > MAX_HOSTNAME_CHARS or not all(c.isalnum() or c in ".-_" for c in value):
        raise Invalid(field, f"must be a host name of at most {MAX_HOSTNAME_CHARS} characters")
    return value


def _host_key(field: str, value: str) -> str:
    """``"<type> <base64>"`` with the comment dropped; "" for none."""
    value = value.strip()
    if not value or value == NOT_AVAILABLE:
        return ""
    if len(value) > PHONE_HOME_MAX_KEY_CHARS:
        raise LimitExceeded(field, PHONE_HOME_MAX_KEY_CHARS, f"{field} is too long")
    parts = value.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES[field] or not set(parts[1]) <= _BASE64:
        expected = " or ".join(KEY_TYPES[field])
        raise Invalid(field, f"must be an OpenSSH public key of type {expected}")
    return f"{parts[0]} {parts[1]}"
