"""Public keys: parse, check and fingerprint what operators upload.

SSH keys are OpenSSH one-liners (``type base64 [comment]``). The base64
blob is decoded and its embedded key type must equal the declared one, so a
truncated or mislabelled key is refused at upload, not at first boot.

Fingerprints follow Nova (``nova/crypto.py``), because guests and operators
compare them with what OpenStack shows: SSH keys get the MD5 of the blob in
colon-separated hex (``generate_fingerprint``), X.509 certificates the SHA-1
of the DER bytes in the same form (``generate_x509_fingerprint``). MD5 here
identifies a key; it protects nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.limits import MAX_PUBLIC_KEY_BYTES
from cloudseed.model import KeyType
from cloudseed.store.rules import check_text

SSH_KEY_TYPES = (
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
# Keys shorter than this are breakable and OpenSSH refuses them too.
MIN_RSA_BITS = 1024
ED25519_KEY_BYTES = 32
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


def parse_public_key(key_type: KeyType, text: str, field: str = "public_key") -> tuple[str, str]:
    """Return (normalised key text, fingerprint), or raise Invalid naming ``field``."""
    if len(text.encode()) > MAX_PUBLIC_KEY_BYTES:
        raise LimitExceeded(
            field, MAX_PUBLIC_KEY_BYTES, f"longer than {MAX_PUBLIC_KEY_BYTES} bytes"
        )
    if key_type is KeyType.X509:
        return _parse_x509(text, field)
    return _parse_ssh(text, field)


def _parse_ssh(text: str, field: str) -> tuple[str, str]:
    line = text.strip()
    if "\n" in line or "\r" in line:
        # authorized_keys would install every line: one field, one key.
        raise Invalid(field, "holds more than one line; give exactly one public key")
    check_text(line, field)
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise Invalid(field, "expected an OpenSSH public key: '<type> <base64> [comment]'")
    declared, encoded = parts[0], parts[1]
    if declared not in SSH_KEY_TYPES:
        raise Invalid(
            field, f"key type {declared!r} is not supported; use one of {', '.join(SSH_KEY_TYPES)}"
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(field, "the key data is not valid base64") from None
    fields = _ssh_strings(blob, field)
    embedded = fields[0].decode("ascii", "replace")
    if embedded != declared:
        raise Invalid(field, f"the key says {declared!r} but its data holds a {embedded!r} key")
    _check_key_material(declared, fields[1:], field)
    comment = f" {parts[2].strip()}" if len(parts) == 3 and parts[2].strip() else ""
    return f"{declared} {encoded}{comment}", _colon_hex(hashlib.md5(blob).digest())  # noqa: S324


def _ssh_strings(blob: bytes, field: str) -> list[bytes]:
    """Split an SSH wire blob into its length-prefixed strings (RFC 4251 §5)."""
    out: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise Invalid(field, "the key data is truncated")
        length = int.from_bytes(blob[offset : offset + 4], "big")
        offset += 4
        if offset + length > len(blob):
            raise Invalid(field, "the key data is truncated")
        out.append(blob[offset : offset + length])
        offset += length
    if not out:
        raise Invalid(field, "the key data is empty")
    return out


def _check_key_material(key_type: str, material: list[bytes], field: str) -> None:
    if key_type == "ssh-rsa":
        if len(material) != 2:
            raise Invalid(field, "an ssh-rsa key holds an exponent and a modulus")
        bits = int.from_bytes(material[1], "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise Invalid(field, f"RSA key of {bits} bits; at least {MIN_RSA_BITS} are required")
    elif key_type == "ssh-ed25519":
        if len(material) != 1 or len(material[0]) != ED25519_KEY_BYTES:
            raise Invalid(field, f"an ssh-ed25519 key is {ED25519_KEY_BYTES} bytes")
    else:
        curve = key_type.rsplit("-", 1)[1]
        if len(material) != 2 or material[0].decode("ascii", "replace") != curve:
            raise Invalid(field, f"an {key_type} key must name curve {curve} and hold a point")
        if not material[1] or material[1][0] != 0x04:
            raise Invalid(field, "the ECDSA point is not an uncompressed point")


def _parse_x509(text: str, field: str) -> tuple[str, str]:
    if text.count("-----BEGIN") > 1:
        raise Invalid(field, "holds more than one PEM block; give exactly one certificate")
    match = _PEM_CERT.search(text)
    if match is None:
        raise Invalid(field, "expected a PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        der = base64.b64decode("".join(match.group("body").split()), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(field, "the certificate body is not valid base64") from None
    # DER of a certificate is a SEQUENCE (0x30) with a long-form length.
    if len(der) < 16 or der[0] != 0x30:
        raise Invalid(field, "the certificate body is not DER-encoded X.509")
    return match.group(0).strip() + "\n", _colon_hex(hashlib.sha1(der).digest())  # noqa: S324


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)
