"""Rotating the shared secret and the token key: a second value is accepted
for checking, never used to sign or issue, and only when configured."""

from __future__ import annotations

import pytest

from cloudseed.api.config import check_api_settings
from cloudseed.api.identify import ProxyIdentifier
from cloudseed.auth.signing import sign_instance_id
from cloudseed.auth.tokens import TokenAuthority, TokenCheck
from cloudseed.errors import ConfigError, SignatureInvalid
from cloudseed.http.message import Request
from cloudseed.settings import load_settings

OLD = b"old-shared-secret-0123456789abcdef"
NEW = b"new-shared-secret-0123456789abcdef"
ID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _signed_with(secret: bytes) -> Request:
    headers = [("x-instance-id", ID), ("x-tenant-id", "proj"),
               ("x-instance-id-signature", sign_instance_id(secret, ID))]
    return Request("GET", "/", "", headers, b"", "10.0.0.5")


def test_during_rotation_the_api_accepts_agents_on_either_secret() -> None:
    rotating = ProxyIdentifier(NEW, also_accepted=OLD)
    assert rotating.claim(_signed_with(OLD)).instance_id == ID
    assert rotating.claim(_signed_with(NEW)).instance_id == ID
    with pytest.raises(SignatureInvalid):
        rotating.claim(_signed_with(b"some-other-secret-0123456789abcd"))


def test_after_rotation_the_old_secret_is_refused() -> None:
    with pytest.raises(SignatureInvalid):
        ProxyIdentifier(NEW).claim(_signed_with(OLD))


def test_tokens_of_the_also_accepted_key_verify_but_new_ones_use_the_key() -> None:
    now = 1_000_000.0
    old_authority = TokenAuthority(OLD, lambda: now)
    rotating = TokenAuthority(NEW, lambda: now, also_accepted=OLD)
    old_token = old_authority.issue("srv-1", 60)
    assert rotating.check(old_token, "srv-1") is TokenCheck.VALID
    assert rotating.check(old_token, "srv-2") is TokenCheck.INVALID
    new_token = rotating.issue("srv-1", 60)
    assert TokenAuthority(NEW, lambda: now).check(new_token, "srv-1") is TokenCheck.VALID
    assert old_authority.check(new_token, "srv-1") is TokenCheck.INVALID
    assert TokenAuthority(NEW, lambda: now).check(old_token, "srv-1") is TokenCheck.INVALID


def test_rotation_settings_load_from_the_environment() -> None:
    settings = load_settings(environ={
        "CLOUDSEED_SHARED_SECRET": NEW.decode(),
        "CLOUDSEED_SHARED_SECRET_ALSO_ACCEPTED": OLD.decode(),
        "CLOUDSEED_API_TOKEN_KEY_ALSO_ACCEPTED": OLD.decode(),
    })
    config = check_api_settings(settings)
    assert config.shared_secret_also_accepted == OLD
    assert config.token_key_also_accepted == OLD
    assert "old-shared" not in repr(settings)


def test_a_short_also_accepted_token_key_is_refused_by_name() -> None:
    settings = load_settings(environ={"CLOUDSEED_SHARED_SECRET": "x",
                                      "CLOUDSEED_API_TOKEN_KEY_ALSO_ACCEPTED": "short"})
    with pytest.raises(ConfigError, match=r"api\.token_key_also_accepted must be at least"):
        check_api_settings(settings)
