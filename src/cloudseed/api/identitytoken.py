"""The audience-bound identity token: what a guest asks, what it is given.

GCE's ``…/service-accounts/default/identity?audience=A&format=F`` on one path
per tree: ``/openstack/latest/identity_token`` and
``/latest/dynamic/instance-identity/token``. Neither is listed in a
directory (a crawler would fetch it without an audience). The token is a JWT
signed by the deployment's identity key (``cloudseed.identity``); the server
it names is the one the chain identified, never anything in the request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from cloudseed.errors import Invalid
from cloudseed.model import Server
from cloudseed.render.ec2 import instance_id

MAX_AUDIENCE_CHARS = 512
FORMATS = ("standard", "full")
# Parameters a query may carry at most once each; anything else is ignored,
# as GCE ignores what it does not know.
_SINGLE = ("audience", "format")


def parse_query(query: str) -> tuple[str, bool]:
    """``(audience, full)`` from the query string; Invalid names the parameter."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=16)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("query", "not a valid query string (at most 16 parameters)") from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in _SINGLE:
            if name in values:
                raise Invalid(name, "given more than once")
            values[name] = value
    audience = values.get("audience")
    if not audience:
        raise Invalid("audience", "required: ?audience=<who the token is for>")
    if len(audience) > MAX_AUDIENCE_CHARS:
        raise Invalid("audience", f"longer than {MAX_AUDIENCE_CHARS} characters")
    if not all("!" <= ch <= "~" for ch in audience):
        raise Invalid("audience", "only printable ASCII without spaces is allowed")
    fmt = values.get("format", "standard")
    if fmt not in FORMATS:
        raise Invalid("format", f"must be one of {', '.join(FORMATS)}")
    return audience, fmt == "full"


def claims(server: Server, audience: str, *, full: bool, issuer: str, now: int,
           ttl_seconds: int) -> dict[str, Any]:
    """The token's claims: who (``sub``), for whom (``aud``), by whom, until when;
    ``format=full`` adds the server's project, name and placement."""
    body: dict[str, Any] = {
        "iss": issuer,
        "sub": server.id,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if full:
        body["cloudseed"] = {
            "project_id": server.project_id,
            "instance_id": server.id,
            "instance_name": server.name,
            "ec2_instance_id": instance_id(server.ec2_id),
            "availability_zone": server.availability_zone,
        }
    return body

