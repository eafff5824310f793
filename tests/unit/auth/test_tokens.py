from __future__ import annotations

import pytest

from cloudseed.auth.tokens import TOKEN_CHARS, TokenAuthority, TokenCheck, parse_ttl
from cloudseed.errors import Invalid

KEY = b"0123456789abcdef0123456789abcdef"
SERVER_A = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SERVER_B = "00000000-1111-4222-8333-444444444444"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_verifies_for_the_server_it_was_issued_to() -> None:
    authority = TokenAuthority(KEY, Clock())
    token = authority.issue(SERVER_A, 60)
    assert len(token) == TOKEN_CHARS
    assert authority.check(token, SERVER_A) is TokenCheck.VALID


def test_token_for_one_server_is_invalid_for_another() -> None:
    authority = TokenAuthority(KEY, Clock())
    assert authority.check(authority.issue(SERVER_A, 60), SERVER_B) is TokenCheck.INVALID


def test_token_is_valid_until_its_ttl_ends_then_expired() -> None:
    clock = Clock()
    authority = TokenAuthority(KEY, clock)
    token = authority.issue(SERVER_A, 21600)
    clock.now += 21599
    assert authority.check(token, SERVER_A) is TokenCheck.VALID
    clock.now += 1
    assert authority.check(token, SERVER_A) is TokenCheck.EXPIRED


def test_token_from_another_key_is_invalid_so_every_host_needs_the_same_key() -> None:
    clock = Clock()
    token = TokenAuthority(KEY, clock).issue(SERVER_A, 60)
    assert TokenAuthority(b"x" * 32, clock).check(token, SERVER_A) is TokenCheck.INVALID
    assert TokenAuthority(KEY, clock).check(token, SERVER_A) is TokenCheck.VALID


@pytest.mark.parametrize(
    "junk",
    ["", "a", "x" * TOKEN_CHARS, "é" * TOKEN_CHARS, "!" * TOKEN_CHARS, "A" * 1000, "AAAA=="],
)
def test_malformed_tokens_are_invalid(junk: str) -> None:
    assert TokenAuthority(KEY, Clock()).check(junk, SERVER_A) is TokenCheck.INVALID


def test_tampered_expiry_is_invalid() -> None:
    authority = TokenAuthority(KEY, Clock())
    token = authority.issue(SERVER_A, 1)
    # Flip a character inside the expiry part (the first 8 bytes).
    tampered = token[:9] + ("A" if token[9] != "A" else "B") + token[10:]
    assert authority.check(tampered, SERVER_A) is TokenCheck.INVALID


@pytest.mark.parametrize(("value", "ttl"), [("1", 1), ("21600", 21600), ("300", 300)])
def test_ttl_accepts_1_to_21600(value: str, ttl: int) -> None:
    assert parse_ttl(value) == ttl


@pytest.mark.parametrize(
    "value", [None, "", "0", "21601", "-1", "+5", " 5", "5.0", "abc", "99999999999999"]
)
def test_ttl_outside_range_missing_or_not_an_integer_is_invalid(value: str | None) -> None:
    with pytest.raises(Invalid):
        parse_ttl(value)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenAuthority(b"short", Clock())
