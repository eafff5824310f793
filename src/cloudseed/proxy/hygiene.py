"""Header hygiene for guest requests: what a guest may never send.

Guests are hostile (DESIGN §4). Neutron's haproxy templates deleted only the
other X-Neutron-*-ID header (LP#1865036) and appended X-Forwarded-For to the
guest's own. Here every identity header is deleted, whatever its case and
however its name is spelt: ``X_Instance_ID`` counts too, because WSGI-style
servers fold ``_`` into ``-`` (both become ``HTTP_X_INSTANCE_ID``), so an
upstream could read it as the real header.

The same rules, as haproxy regular expressions, are in ``proxy.haproxy``;
one test suite runs against both.
"""

from __future__ import annotations

from cloudseed.auth import headers as h

# Hop-by-hop headers (RFC 9110 §7.6.1) and framing: they describe the
# guest's connection, not the request, and the client re-frames the body.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)

# For haproxy: names are lower-cased there too (HTX), `[-_]` covers the
# underscore spelling. Kept next to ``is_identity_header`` so they change together.
IDENTITY_HEADER_REGEX = (
    "^(x[-_]forwarded[-_]for|forwarded|x[-_]instance[-_]id|x[-_]instance[-_]id[-_]signature"
    "|x[-_]tenant[-_]id|x[-_]neutron[-_].*)$"
)


def is_identity_header(name: str) -> bool:
    """``name`` lower-cased, as our parser delivers it."""
    normal = name.replace("_", "-")
    return normal in h.IDENTITY_HEADERS or normal.startswith(h.NEUTRON_PREFIX)


def refuses_forwarded_put(method: str, headers: list[tuple[str, str]]) -> bool:
    """AWS refuses a token PUT that carries X-Forwarded-For: the mark of a request
    relayed by some proxy inside the guest (SSRF). Applied to every PUT — the
    token request is the only PUT there is — so no spelling of the path dodges it.
    """
    return method == "PUT" and any(
        name.replace("_", "-") in (h.FORWARDED_FOR, h.FORWARDED) for name, _ in headers
    )


def clean_headers(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """The headers to pass on, and how many identity headers were removed."""
    kept: list[tuple[str, str]] = []
    removed = 0
    for name, value in headers:
        if is_identity_header(name):
            removed += 1
        elif name not in HOP_BY_HOP:
            kept.append((name, value))
    return kept, removed

