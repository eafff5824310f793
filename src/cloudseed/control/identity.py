"""The control API's side of instance identity: create, rotate, publish keys.

The private keys never leave the store through here: only certificates,
the JWKS document and each key's id and age are shown.
"""

from __future__ import annotations

from typing import Any

from cloudseed.identity import PUBLISHED_KEYS, certificates_pem, generate_key, jwks
from cloudseed.log import get_logger
from cloudseed.model import IdentityKey
from cloudseed.store.protocol import Store

log = get_logger("cloudseed.control.identity")
PEM_MEDIA_TYPE = "application/x-pem-file"


def ensure_key(store: Store, issuer: str) -> None:
    """Create the first identity key if there is none (control API start).

    Two control APIs starting at once on a fresh store may both create one;
    the newer signs and both are published, which is harmless.
    """
    if not store.list_identity_keys():
        rotate(store, issuer)


def rotate(store: Store, issuer: str) -> dict[str, Any]:
    """A new signing key; the one before it stays published, older ones go."""
    key = generate_key(issuer)
    with store.write() as writer:
        writer.add_identity_key(key, keep=PUBLISHED_KEYS)
    log.info("identity key created", extra={"fields": {"kid": key.kid}})
    return _describe(key, signing=True)


def keys(store: Store) -> dict[str, Any]:
    published = store.list_identity_keys()
    return {"keys": [_describe(key, signing=index == 0) for index, key in enumerate(published)]}


def certificate(store: Store) -> str:
    return certificates_pem(store.list_identity_keys())


def key_set(store: Store) -> dict[str, Any]:
    return jwks(store.list_identity_keys())


def _describe(key: IdentityKey, *, signing: bool) -> dict[str, Any]:
    return {"kid": key.kid, "created_at": key.created_at, "signing": signing}
