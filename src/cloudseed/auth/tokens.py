"""IMDSv2 session tokens: stateless, bound to one server and an expiry.

A token is ``base64url(expiry || mac)`` where ``expiry`` is the 8-byte
big-endian Unix second it stops being valid and ``mac`` is HMAC-SHA256 over a
domain tag, the expiry and the server id. Nothing is stored: every worker on
every host that holds the key verifies any token, and a token issued to
server A never verifies for server B because B's id is in the MAC input.

Firecracker encrypts its tokens (AES-GCM over the expiry); we only need
integrity, not secrecy -- the expiry is no secret -- so a MAC is enough and
keeps the check to one HMAC and one constant-time compare.

The clock is injected (wall-clock seconds), so tests can walk a token past
its lifetime without sleeping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from enum import Enum

from cloudseed.errors import Invalid
from cloudseed.limits import MAX_TOKEN_TTL_SECONDS, MIN_TOKEN_TTL_SECONDS

# Separates token MACs from any other use of the same key.
_DOMAIN_TAG = b"cloudseed-imds-token-v1\0"
_EXPIRY_BYTES = 8
_MAC_BYTES = 32
# base64url without padding of 40 bytes. Anything longer or shorter is
# refused before decoding, so junk costs one length check.
TOKEN_CHARS = 54
_TTL_PATTERN = re.compile(r"[0-9]{1,10}")


class TokenCheck(Enum):
    VALID = "valid"
    INVALID = "invalid"  # malformed, forged, or for another server
    EXPIRED = "expired"


def parse_ttl(value: str | None) -> int:
    """The TTL header's value in seconds; Invalid unless an integer in 1..21600."""
    if value is None:
        raise Invalid(
            "X-aws-ec2-metadata-token-ttl-seconds",
            "header is required to request a session token",
        )
    if not _TTL_PATTERN.fullmatch(value):
        raise Invalid(
            "X-aws-ec2-metadata-token-ttl-seconds", "must be an integer number of seconds"
        )
    ttl = int(value)
    if not MIN_TOKEN_TTL_SECONDS <= ttl <= MAX_TOKEN_TTL_SECONDS:
        raise Invalid(
            "X-aws-ec2-metadata-token-ttl-seconds",
            f"must be between {MIN_TOKEN_TTL_SECONDS} and {MAX_TOKEN_TTL_SECONDS}",
        )
    return ttl


class TokenAuthority:
    """Issues and checks session tokens with one HMAC key."""

    __slots__ = ("_accepted", "_clock", "_key")

    def __init__(
        self, key: bytes, clock: Callable[[], float] = time.time, also_accepted: bytes = b""
    ) -> None:
        """``also_accepted``: a second key whose tokens verify but that issues none
        (key rotation across hosts, docs/OPERATIONS.md)."""
        if len(key) < 16:
            raise ValueError("token key must be at least 16 bytes")
        self._key = key
        self._accepted = (key, also_accepted) if also_accepted else (key,)
        self._clock = clock

    def _mac(self, expiry: bytes, server_id: str, key: bytes | None = None) -> bytes:
        return hmac.new(
            key or self._key, _DOMAIN_TAG + expiry + server_id.encode(), hashlib.sha256
        ).digest()

    def issue(self, server_id: str, ttl_seconds: int) -> str:
        expiry = int(self._clock()) + ttl_seconds
        packed = expiry.to_bytes(_EXPIRY_BYTES, "big")
        raw = packed + self._mac(packed, server_id)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def check(self, token: str, server_id: str) -> TokenCheck:
        if len(token) != TOKEN_CHARS:
            return TokenCheck.INVALID
        try:
            raw = base64.urlsafe_b64decode(token + "==")
        except (binascii.Error, ValueError):
            return TokenCheck.INVALID
        if len(raw) != _EXPIRY_BYTES + _MAC_BYTES:
            return TokenCheck.INVALID
        packed, mac = raw[:_EXPIRY_BYTES], raw[_EXPIRY_BYTES:]
        ok = False
        for key in self._accepted:  # every one, so timing does not tell which matched
            ok |= hmac.compare_digest(mac, self._mac(packed, server_id, key))
        if not ok:
            return TokenCheck.INVALID
        # Valid through the last second of its TTL, expired at the expiry second.
        if int.from_bytes(packed, "big") <= self._clock():
            return TokenCheck.EXPIRED
        return TokenCheck.VALID
