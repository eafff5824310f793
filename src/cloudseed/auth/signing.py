"""Proxy identity signatures, wire-compatible with Nova and Neutron.

The agent signs the instance id with the shared secret; the API recomputes
and compares in constant time. Neither side ever logs the expected value
(Nova LP#2150094 leaked it that way).
"""

from __future__ import annotations

import hashlib
import hmac


def sign_instance_id(secret: bytes, instance_id: str) -> str:
    """Hex HMAC-SHA256 of the instance id: Neutron's ``sign_instance_id``."""
    return hmac.new(secret, instance_id.encode(), hashlib.sha256).hexdigest()


def is_valid_signature(secret: bytes, instance_id: str, signature: str) -> bool:
    expected = sign_instance_id(secret, instance_id)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
