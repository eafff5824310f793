"""The drive's ``random_seed``: reproducible per (server, content), secret to others.

Over HTTP, ``meta_data.json`` carries 512 fresh random bytes per response
(anchors §1.3). A drive cannot be fresh per read, and a random one would make
every rebuild of the same data a different image. So the drive's seed is
derived: ``drive_seed`` is an HMAC, under a key only the operator holds, of
the server id and the digest of the drive's other content
(``layout.DriveContent.digest``); ``random_seed_b64`` stretches it to Nova's
512 bytes. Anyone without the key cannot predict a guest's seed; the same
key, server and data always give the same image.

Why the content and not the store revision: a revision moves on writes that
do not change this drive (another server, or a no-op write to this one), and
an image must not change, nor be rewritten, unless what it says changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cloudseed.errors import ConfigError
from cloudseed.render import RANDOM_SEED_BYTES

# Domain separation: this key may be shared with other HMAC uses one day.
_SEED_CONTEXT = b"cloudseed configdrive seed v1\x00"
_EXPAND_CONTEXT = b"cloudseed random_seed v1"


def drive_seed(key: bytes, server_id: str, content_digest: bytes) -> bytes:
    """HMAC-SHA256 of the server id and content digest under ``key``: the drive's secret seed."""
    if not key:
        raise ConfigError(
            "configdrive.seed_key is empty; the drive's random_seed would be predictable"
        )
    # A digest has a fixed length, so id and digest cannot be shifted into each other.
    message = _SEED_CONTEXT + server_id.encode("utf-8") + b"\x00" + content_digest
    return hmac.new(key, message, hashlib.sha256).digest()


def random_seed_b64(seed: bytes) -> bytes:
    """Nova's 512-byte ``random_seed``, base64, expanded from ``seed`` (RFC 5869 HKDF-Expand)."""
    if not seed:
        raise ConfigError("the config drive seed is empty")
    blocks: list[bytes] = []
    previous = b""
    counter = 1
    while sum(len(block) for block in blocks) < RANDOM_SEED_BYTES:
        previous = hmac.new(
            seed, previous + _EXPAND_CONTEXT + bytes([counter]), hashlib.sha256
        ).digest()
        blocks.append(previous)
        counter += 1
    return base64.b64encode(b"".join(blocks)[:RANDOM_SEED_BYTES])
