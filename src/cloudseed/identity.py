"""Signed instance identity: the keys, AWS's signatures and an audience JWT.

One RSA-2048 key signs at a time; it and the key before it are published (a
self-signed X.509 certificate each, and a JWKS document), so what the previous
key signed still verifies during a rotation. Keys live in the store (every API
worker and host signs with the same key); ``IdentityKey`` holds one.

What a guest can fetch, per server:

- ``signature``: base64 RSASSA-PKCS1-v1_5 with SHA-256 over the document, as
  AWS's ``signature`` (``openssl dgst -sha256 -verify``).
- ``pkcs7`` and ``rsa2048``: the same CMS SignedData, the document attached,
  SHA-256 with RSA-2048, base64 without PEM armour, 64 columns, as AWS's
  ``rsa2048``. AWS's ``pkcs7`` is DSA with SHA-1, which OpenSSL 3 no longer
  signs by default; AWS's verification recipe (``openssl smime -verify -in
  pkcs7 -inform PEM -certfile cert -noverify``) works unchanged with ours.
- an RS256 JWT per request (``aud`` from the guest; GCE's identity token).

Signing is deterministic in what it covers and done once per document
change (the API caches it with the rendered server), except the JWT, which
carries the request's audience and the time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from cloudseed.model import IdentityKey

KEY_BITS = 2048
# The signing key and the one before it: a rotation never invalidates what
# the previous key signed while its tokens and documents are still in use.
PUBLISHED_KEYS = 2
CERTIFICATE_YEARS = 10
# The three files under ``dynamic/instance-identity/`` besides ``document``.
SIGNATURE_FILES = ("pkcs7", "rsa2048", "signature")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _public_jwk(public: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    return {"e": _int_b64url(numbers.e), "kty": "RSA", "n": _int_b64url(numbers.n)}


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the JWK's required members in canonical JSON."""
    canonical = json.dumps(_public_jwk(public), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def generate_key(issuer: str, now: datetime | None = None) -> IdentityKey:
    """A new RSA-2048 key and its self-signed certificate (CN = ``issuer``)."""
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloudseed"),
        x509.NameAttribute(NameOID.COMMON_NAME, issuer[:64] or "cloudseed"),
    ])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CERTIFICATE_YEARS))
        .sign(key, hashes.SHA256())
    )
    return IdentityKey(
        kid=thumbprint(key.public_key()),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        # Microseconds: two rotations in one second still order.
        created_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def certificates_pem(keys: Sequence[IdentityKey]) -> str:
    """The published certificates, signing key first, concatenated PEM."""
    return "".join(key.certificate_pem for key in keys[:PUBLISHED_KEYS])


def jwks(keys: Sequence[IdentityKey]) -> dict[str, Any]:
    """The published keys as a JSON Web Key Set (RFC 7517)."""
    published = []
    for key in keys[:PUBLISHED_KEYS]:
        public = x509.load_pem_x509_certificate(key.certificate_pem.encode()).public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        published.append({**_public_jwk(public), "kid": key.kid, "use": "sig", "alg": "RS256"})
    return {"keys": published}


class IdentitySigner:
    """Signs with the newest key; built once per key change, shared by requests."""

    __slots__ = ("_certificate", "_key", "kid")

    def __init__(self, key: IdentityKey) -> None:
        private = serialization.load_pem_private_key(key.private_key_pem.encode(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self._key = private
        self._certificate = x509.load_pem_x509_certificate(key.certificate_pem.encode())
        self.kid = key.kid

    def sign_document(self, document: bytes) -> dict[str, bytes]:
        """``signature``, ``pkcs7`` and ``rsa2048`` for ``document``, as served."""
        raw = self._key.sign(document, padding.PKCS1v15(), hashes.SHA256())
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(document)
            .add_signer(self._certificate, self._key, hashes.SHA256())
            # Binary: the signed bytes are the document's, newlines and all.
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        armourless = "\n".join(textwrap.wrap(base64.b64encode(signed).decode("ascii"), 64))
        return {
            "signature": base64.b64encode(raw),
            "pkcs7": armourless.encode("ascii"),
            "rsa2048": armourless.encode("ascii"),
        }

    def token(self, claims: Mapping[str, Any]) -> bytes:
        """An RS256 JWT (RFC 7519) of ``claims``."""
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
            for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(),
                                   hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}".encode("ascii")


class Keyring:
    """The signer of the newest key, replaced when the store's keys change."""

    __slots__ = ("signer",)

    def __init__(self) -> None:
        self.signer: IdentitySigner | None = None

    def update(self, keys: Sequence[IdentityKey]) -> bool:
        """Sign with ``keys[0]`` from now on; True when that changed the signer."""
        newest = keys[0] if keys else None
        if (newest.kid if newest else None) == (self.signer.kid if self.signer else None):
            return False
        self.signer = IdentitySigner(newest) if newest else None
        return True
