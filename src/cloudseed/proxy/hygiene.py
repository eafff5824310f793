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
from cloudseed.limits import MAX_HOP_LIMIT, MIN_HOP_LIMIT

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


# The same rules as wire bytes, for the relay's one pass over a request.
_HOP_BY_HOP_WIRE = frozenset(name.encode() for name in HOP_BY_HOP)
_IDENTITY_WIRE = frozenset(name.encode() for name in h.IDENTITY_HEADERS)
_NEUTRON_PREFIX_WIRE = h.NEUTRON_PREFIX.encode()
# AWS refuses a token PUT that carries X-Forwarded-For (or Forwarded): the
# mark of a request relayed by some proxy inside the guest (SSRF).
_FORWARDED_WIRE = frozenset({h.FORWARDED_FOR.encode(), h.FORWARDED.encode()})
_CONTENT_TYPE = b"content-type"
_HOP_LIMIT_WIRE = h.HOP_LIMIT.encode()
_DEFAULT_CONTENT_TYPE = b"text/plain; charset=utf-8"


def guest_headers(
    headers: list[tuple[bytes, bytes]], *, is_put: bool
) -> tuple[list[tuple[bytes, bytes]], int, bool]:
    """One pass over a guest's headers (names lower-cased by the parser).

    Returns the headers to pass on, how many identity headers were
    removed, and whether the request must be refused: a PUT carrying
    X-Forwarded-For, however spelt. Applied to every PUT -- the token request
    and guest-attribute writes -- so no spelling of the path dodges it.
    """
    kept: list[tuple[bytes, bytes]] = []
    removed = 0
    refused = False
    for name, value in headers:
        if name in _HOP_BY_HOP_WIRE:
            continue
        normal = name.replace(b"_", b"-") if b"_" in name else name
        if normal in _IDENTITY_WIRE or normal.startswith(_NEUTRON_PREFIX_WIRE):
            removed += 1
            if is_put and normal in _FORWARDED_WIRE:
                refused = True
        elif b"\r" not in value and b"\n" not in value:
            # The parser cannot deliver CR or LF in a value (obs-fold aside);
            # the check keeps a folded line from smuggling a header.
            kept.append((name, value))
    return kept, removed, refused


def header_lines(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """``guest_headers``' result as the wire lines the relay forwards."""
    return [b"%s: %s\r\n" % pair for pair in headers]


def relayed_response_lines(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes, int]:
    """The agent's Content-Type, its other end-to-end headers as wire lines, and the hop limit.

    The hop limit (``X-Cloudseed-Hop-Limit``, on a token PUT's reply) is
    ours to apply, not the guest's to read: it is removed here, and 0 when
    absent or not a number in range.
    """
    content_type = _DEFAULT_CONTENT_TYPE
    lines = []
    hop_limit = 0
    for name, value in headers:
        if name == _CONTENT_TYPE:
            content_type = value
        elif name == _HOP_LIMIT_WIRE:
            hop_limit = _hop_limit(value)
        elif name not in _HOP_BY_HOP_WIRE:
            lines.append(b"%s: %s\r\n" % (name, value))
    return content_type, b"".join(lines), hop_limit


def _hop_limit(value: bytes) -> int:
    if value.isdigit() and MIN_HOP_LIMIT <= int(value) <= MAX_HOP_LIMIT:
        return int(value)
    return 0
