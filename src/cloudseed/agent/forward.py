"""Forward a resolved guest request to the metadata API, signed — as bytes.

The API receives exactly the headers Nova expects from Neutron's agent
(``X-Forwarded-For``, ``X-Instance-ID``, ``X-Tenant-ID``,
``X-Instance-ID-Signature``), plus the few guest headers the API acts on:
session tokens and their TTL, ``If-None-Match``, ``Content-Type`` and
``Accept``. Nothing else the guest sent goes further.

Every status the API answers is passed through with the headers that give it
meaning (``ETag``, ``Allow``, ``Retry-After``, the token TTL …). Neutron's
agent raised on anything outside its list — a 429 or 405 became a 500
(anchors §2.4, §12.5); here there is no list.

The identity block is built and signed once per (scope, guest address) and
kept with the cached resolution; a request then costs one join of ready
bytes. Header names arrive lower-cased from the parser; the tables below map
them to the spelling we send.
"""

from __future__ import annotations

from cloudseed.agent.resolve import Identity
from cloudseed.auth import headers as h
from cloudseed.auth.signing import sign_instance_id
from cloudseed.http.client import UpstreamResponse

# Guest headers the API needs, by lower-case name → the spelling we send.
PASSED_REQUEST_HEADERS = {
    h.TOKEN: "X-aws-ec2-metadata-token",
    h.TOKEN_TTL: "X-aws-ec2-metadata-token-ttl-seconds",
    h.TOKEN_ALIAS: "X-Metadata-Token",
    h.TOKEN_TTL_ALIAS: "X-Metadata-Token-Ttl-Seconds",
    h.IF_NONE_MATCH: "If-None-Match",
    "content-type": "Content-Type",
    "accept": "Accept",
}
# API response headers the guest needs. Content-Type and Content-Length are
# the response's own fields; hop-by-hop headers belong to each connection.
PASSED_RESPONSE_HEADERS = {
    "etag": "ETag",
    "allow": "Allow",
    "retry-after": "Retry-After",
    "cache-control": "Cache-Control",
    "last-modified": "Last-Modified",
    "www-authenticate": "WWW-Authenticate",
    "content-encoding": "Content-Encoding",
    "vary": "Vary",
    h.TOKEN_TTL: "X-aws-ec2-metadata-token-ttl-seconds",
    h.TOKEN_TTL_ALIAS: "X-Metadata-Token-Ttl-Seconds",
    # For the proxy in front of us, which removes it (``proxy.hygiene``).
    h.HOP_LIMIT: "X-Cloudseed-Hop-Limit",
}


def _wire(table: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode("latin-1"): f"{v}: ".encode("latin-1") for k, v in table.items()}


# The same tables as wire bytes: lower-case name → "Spelling: ".
REQUEST_HEADER_PREFIXES = _wire(PASSED_REQUEST_HEADERS)
RESPONSE_HEADER_PREFIXES = _wire(PASSED_RESPONSE_HEADERS)
CONTENT_TYPE = b"content-type"
DEFAULT_CONTENT_TYPE = b"text/plain; charset=utf-8"
# Methods that carry a body, so Content-Length goes even when it is 0.
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


def _is_clean(value: bytes) -> bool:
    # Values come from the parser or the store, which cannot hold CR or LF;
    # the check keeps any future path from injecting a header.
    return b"\r" not in value and b"\n" not in value


def identity_block(secret: bytes, identity: Identity, source_ip: str) -> bytes:
    """The header lines that say who asks: built and signed once, reused per request."""
    lines = [
        ("X-Forwarded-For", source_ip),
        ("X-Instance-ID", identity.server_id),
        ("X-Tenant-ID", identity.project_id),
        ("X-Instance-ID-Signature", sign_instance_id(secret, identity.server_id)),
    ]
    out = []
    for name, value in lines:
        raw = value.encode("latin-1", "replace")
        if _is_clean(raw):
            out.append(b"%s: %s\r\n" % (name.encode(), raw))
    return b"".join(out)


def guest_header_lines(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The guest headers the API acts on, as wire lines; everything else stays here."""
    lines = []
    for name, value in headers:
        prefix = REQUEST_HEADER_PREFIXES.get(name)
        if prefix is not None and _is_clean(value):
            lines.append(prefix + value + b"\r\n")
    return lines


def encode_request(
    method: bytes, target: bytes, host_line: bytes, identity: bytes, guest: list[bytes], *,
    body: bytes,
) -> bytes:
    # HEAD goes upstream as GET: our front then answers HEAD with the real
    # Content-Length and no body, whatever the API does with HEAD.
    if method == b"HEAD":
        method = b"GET"
    framing = b""
    if body or method in BODY_METHODS:
        framing = b"Content-Length: %d\r\n" % len(body)
    return b"".join((method, b" ", target, b" HTTP/1.1\r\n", host_line, identity,
                     *guest, framing, b"\r\n", body))


def response_parts(upstream: UpstreamResponse) -> tuple[bytes, bytes]:
    """The API response's Content-Type and the header lines the guest gets."""
    content_type = DEFAULT_CONTENT_TYPE
    lines = []
    for name, value in upstream.raw_headers:
        if name == CONTENT_TYPE:
            content_type = value
            continue
        prefix = RESPONSE_HEADER_PREFIXES.get(name)
        if prefix is not None:
            lines.append(prefix + value + b"\r\n")
    return content_type, b"".join(lines)
