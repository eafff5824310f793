from __future__ import annotations

import pytest

from cloudseed.api.identify import DirectIdentifier, ProxyIdentifier, parse_networks
from cloudseed.auth.signing import sign_instance_id
from cloudseed.errors import ConfigError, IdentityMissing, SignatureInvalid
from cloudseed.http.message import Request

SECRET = b"secret"
ID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
GOOD = sign_instance_id(SECRET, ID)


def request(headers: list[tuple[str, str]], peer: str = "10.0.0.5") -> Request:
    return Request("GET", "/", "", headers, b"", peer)


def signed(**override: str) -> list[tuple[str, str]]:
    values = {"x-instance-id": ID, "x-tenant-id": "proj", "x-instance-id-signature": GOOD}
    values.update(override)
    return [(k, v) for k, v in values.items() if v != "-"]


def test_valid_signed_headers_give_the_claim() -> None:
    claim = ProxyIdentifier(SECRET).claim(request(signed()))
    assert (claim.instance_id, claim.tenant_id) == (ID, "proj")


@pytest.mark.parametrize("missing", ["x-instance-id", "x-tenant-id", "x-instance-id-signature"])
def test_missing_identity_header_is_identity_missing(missing: str) -> None:
    with pytest.raises(IdentityMissing):
        ProxyIdentifier(SECRET).claim(request(signed(**{missing: "-"})))


@pytest.mark.parametrize("repeated", ["x-instance-id", "x-tenant-id", "x-instance-id-signature"])
def test_repeated_identity_header_is_identity_missing(repeated: str) -> None:
    headers = signed()
    headers.append((repeated, dict(headers)[repeated]))
    with pytest.raises(IdentityMissing, match="once"):
        ProxyIdentifier(SECRET).claim(request(headers))


@pytest.mark.parametrize(
    "signature", ["0" * 64, GOOD.upper(), GOOD[:-1], "é", sign_instance_id(b"other", ID)]
)
def test_wrong_signature_is_signature_invalid(signature: str) -> None:
    identifier = ProxyIdentifier(SECRET)
    identifier.claim(request(signed()))  # remembered as verified
    with pytest.raises(SignatureInvalid):
        identifier.claim(request(signed(**{"x-instance-id-signature": signature})))


def test_signature_for_another_instance_is_refused() -> None:
    other = sign_instance_id(SECRET, "someone-else")
    with pytest.raises(SignatureInvalid):
        ProxyIdentifier(SECRET).claim(request(signed(**{"x-instance-id-signature": other})))


TRUSTED = parse_networks(("192.0.2.0/24", "fd00::/8"), "api.trusted_proxy_cidrs")


def test_direct_mode_uses_the_peer_address() -> None:
    assert DirectIdentifier(()).client_address(request([], "10.0.0.5")) == "10.0.0.5"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    req = request([("x-forwarded-for", "10.9.9.9")], "10.0.0.5")
    assert DirectIdentifier(TRUSTED).client_address(req) == "10.0.0.5"
    assert DirectIdentifier(()).client_address(req) == "10.0.0.5"


@pytest.mark.parametrize(
    ("xff", "client"),
    [
        (["10.0.0.7"], "10.0.0.7"),
        # A guest-written value on the left is never believed.
        (["6.6.6.6, 10.0.0.7"], "10.0.0.7"),
        (["6.6.6.6, 10.0.0.7, 192.0.2.9"], "10.0.0.7"),
        (["6.6.6.6", "10.0.0.7"], "10.0.0.7"),
        (["fd00::1, 2001:db8::7"], "2001:db8::7"),
        (["192.0.2.8, 192.0.2.9"], "192.0.2.8"),
        ([], "192.0.2.1"),
    ],
)
def test_forwarded_for_from_a_trusted_proxy_names_the_rightmost_untrusted(
    xff: list[str], client: str
) -> None:
    req = request([("x-forwarded-for", v) for v in xff], "192.0.2.1")
    assert DirectIdentifier(TRUSTED).client_address(req) == client


def test_garbage_in_forwarded_for_from_a_trusted_proxy_is_refused() -> None:
    req = request([("x-forwarded-for", "not-an-ip")], "192.0.2.1")
    with pytest.raises(IdentityMissing):
        DirectIdentifier(TRUSTED).client_address(req)


def test_bad_cidr_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"api\.trusted_proxy_cidrs.*10\.0\.0\.0/33"):
        parse_networks(("10.0.0.0/33",), "api.trusted_proxy_cidrs")


def test_identify_from_distinct_headers_matches_the_scan() -> None:
    identifier = ProxyIdentifier(SECRET)
    headers = signed()
    assert identifier.identify(request(headers), dict(headers)) == (ID, "proj")
    assert identifier.identify(request(headers), None) == (ID, "proj")
    wrong = signed(**{"x-instance-id-signature": "0" * 64})
    with pytest.raises(SignatureInvalid):
        identifier.identify(request(wrong), dict(wrong))
