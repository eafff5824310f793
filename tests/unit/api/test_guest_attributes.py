"""Guest attributes on the metadata API: both trees, limits, tokens, hostile names and values.

Real HTTP to a real MetadataApp (direct mode, the guest's loopback address
identifies it) over a real store, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from tests.support.api import FakeClock, api_settings, rich_with, running_api, store_view
from tests.support.samples import RICH

from cloudseed.limits import (
    GUEST_ATTRIBUTE_WRITE_BURST,
    GUEST_ATTRIBUTE_WRITES_PER_MINUTE,
    MAX_GUEST_ATTRIBUTE_VALUE_BYTES,
    MAX_GUEST_ATTRIBUTES,
)
from cloudseed.model import ImdsOptions, TokenPolicy
from cloudseed.store import SqlStore

OS = "/openstack/latest/guest_attributes"
EC2 = "/latest/guest-attributes"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVgdBx3ckJ9xKvvvEnUZvI2R2fDcZyw4zTVNSnY+A1Q"
# Seconds that refill one write of the budget.
REFILL_SECONDS = 60 / GUEST_ATTRIBUTE_WRITES_PER_MINUTE


def _stored(store: SqlStore) -> dict[tuple[str, str], str]:
    return {(a.namespace, a.key): a.value for a in store.list_guest_attributes(RICH.server.id)}


def test_round_trip_on_both_trees(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        assert api.request(f"{OS}/hostkeys/ssh-ed25519", method="PUT",
                           body=KEY.encode()).status == 200
        assert api.request(f"{EC2}/boot/stage", method="PUT", body=b"done\n").status == 200
        # One namespace per server, whichever tree wrote it.
        for tree in (OS, EC2):
            listing = api.request(f"{tree}/")
            assert (listing.status, listing.body) == (200, b"boot/\nhostkeys/")
            assert api.request(f"{tree}/hostkeys/").body == b"ssh-ed25519"
            assert api.request(f"{tree}/hostkeys/ssh-ed25519").body == KEY.encode()
            assert api.request(f"{tree}/boot/stage").body == b"done\n"
        assert api.request(f"{EC2}/hostkeys/ssh-ed25519", method="DELETE").status == 200
        assert api.request(f"{OS}/hostkeys/ssh-ed25519").status == 404
        assert api.request(f"{OS}/hostkeys/").status == 404
        assert api.request(f"{OS}/boot/stage", method="DELETE").status == 200
        assert api.request(f"{OS}/boot/stage", method="DELETE").status == 404
        assert api.request(f"{OS}/").body == b""
    assert _stored(store) == {}


def test_directories_are_read_only_and_keys_take_four_methods(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        for path in (f"{OS}/", f"{OS}/ns/", EC2):
            reply = api.request(path, method="PUT", body=b"x")
            assert reply.status == 405
            assert reply.headers["allow"] == "GET, HEAD"
        reply = api.request(f"{OS}/ns/key", method="POST", body=b"x")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD, PUT, DELETE"
    assert _stored(store) == {}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"{OS}/ns/a%00b", "key"),  # NUL
        (f"{OS}/n%00s/key", "namespace"),
        (f"{OS}/ns/%ED%A0%80", "key"),  # a lone surrogate, as UTF-8 would spell it
        (f"{OS}/ns/caf%C3%A9", "key"),  # non-ASCII
        (f"{OS}/ns/{'k' * 65}", "key"),
        (f"{EC2}/{'n' * 65}/key", "namespace"),
        (f"{OS}/ns/.hidden", "key"),
        (f"{OS}/ns/-option", "key"),
        (f"{OS}/ns/a%2Fb", "key"),  # an escaped slash is still a slash: three segments
        (f"{OS}/ns/a%20b", "key"),
    ],
)
def test_hostile_names_are_400_naming_the_field(store: SqlStore, path: str, field: str) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        for method in ("PUT", "GET"):
            reply = api.request(path, method=method, body=b"v" if method == "PUT" else None)
            assert reply.status == 400, (method, reply.body)
            assert reply.body.decode().startswith(f"{field}:"), reply.body
    assert _stored(store) == {}


def test_traversal_out_of_the_directory_writes_nothing(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        for path in (f"{OS}/ns/..%2F..%2Fmeta_data.json", f"{OS}/../password",
                     f"{EC2}/ns/../../meta-data/hostname"):
            reply = api.request(path, method="PUT", body=b"x")
            assert 400 <= reply.status < 500, (path, reply.status)
        assert api.request("/openstack/latest/meta_data.json").status == 200
    assert _stored(store) == {}


@pytest.mark.parametrize(
    "value",
    [
        b"a\x00b",  # NUL: PostgreSQL cannot hold it, a C reader would cut there
        b"\xff\xfe",  # not UTF-8
        b"\xed\xa0\x80",  # a surrogate spelt in UTF-8 (CESU-8)
        b"\x1b]0;owned\x07",  # a terminal escape for the operator's CLI
        b"x" * (MAX_GUEST_ATTRIBUTE_VALUE_BYTES + 1),
    ],
)
def test_hostile_values_are_400_naming_the_value(store: SqlStore, value: bytes) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        reply = api.request(f"{OS}/ns/key", method="PUT", body=value)
    assert reply.status == 400, reply.body
    assert reply.body.decode().startswith("value:"), reply.body
    assert _stored(store) == {}


def test_largest_value_and_multiline_text_are_stored_as_sent(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    biggest = "é" * (MAX_GUEST_ATTRIBUTE_VALUE_BYTES // 2)
    with running_api(store, api_settings(mode="direct")) as api:
        assert api.request(f"{OS}/ns/big", method="PUT", body=biggest.encode()).status == 200
        assert api.request(f"{OS}/ns/text", method="PUT", body=b"a\tb\r\nc\n").status == 200
        assert api.request(f"{OS}/ns/empty", method="PUT", body=b"").status == 200
        assert api.request(f"{OS}/ns/big").body == biggest.encode()
    assert _stored(store) == {("ns", "big"): biggest, ("ns", "text"): "a\tb\r\nc\n",
                              ("ns", "empty"): ""}


def test_key_count_limit_is_400_naming_it_and_overwrites_still_work(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    clock = FakeClock()
    with running_api(store, api_settings(mode="direct"), clock=clock) as api:
        for n in range(MAX_GUEST_ATTRIBUTES):
            clock.advance(REFILL_SECONDS)
            reply = api.request(f"{OS}/ns{n % 3}/k{n}", method="PUT", body=b"v")
            assert reply.status == 200, reply.body
        clock.advance(REFILL_SECONDS)
        refused = api.request(f"{OS}/other/one-more", method="PUT", body=b"v")
        assert refused.status == 400
        assert f"{MAX_GUEST_ATTRIBUTES} guest attributes" in refused.body.decode()
        clock.advance(REFILL_SECONDS)
        assert api.request(f"{OS}/ns0/k0", method="PUT", body=b"new").status == 200
    stored = _stored(store)
    assert len(stored) == MAX_GUEST_ATTRIBUTES
    assert stored[("ns0", "k0")] == "new"
    assert ("other", "one-more") not in stored


def test_write_rate_is_429_naming_the_limit_until_the_budget_refills(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    clock = FakeClock()
    with running_api(store, api_settings(mode="direct"), clock=clock) as api:
        for n in range(GUEST_ATTRIBUTE_WRITE_BURST):
            assert api.request(f"{OS}/ns/k{n}", method="PUT", body=b"v").status == 200
        for method in ("PUT", "DELETE"):  # a delete is a write too
            refused = api.request(f"{OS}/ns/k0", method=method, body=b"w")
            assert refused.status == 429
            assert refused.headers["retry-after"] == str(round(REFILL_SECONDS))
            assert f"{GUEST_ATTRIBUTE_WRITES_PER_MINUTE} per minute" in refused.body.decode()
        # Reads are not writes.
        assert api.request(f"{OS}/ns/k0").body == b"v"
        clock.advance(REFILL_SECONDS)
        assert api.request(f"{OS}/ns/k0", method="PUT", body=b"w").status == 200
        assert api.request(f"{OS}/ns/k1", method="PUT", body=b"w").status == 429
    assert _stored(store)[("ns", "k0")] == "w"
    assert _stored(store)[("ns", "k1")] == "v"


def test_tokens_guard_reads_and_writes_when_the_server_requires_them(store: SqlStore) -> None:
    store_view(store, rich_with(imds=ImdsOptions(tokens=TokenPolicy.REQUIRED)),
               guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        assert api.request(f"{OS}/ns/key", method="PUT", body=b"v").status == 401
        assert api.request(f"{EC2}/ns/key", method="DELETE").status == 401
        assert api.request(f"{OS}/").status == 401
        assert _stored(store) == {}
        token = api.request("/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                            method="PUT").body.decode()
        header = {"X-aws-ec2-metadata-token": token}
        assert api.request(f"{OS}/ns/key", header, method="PUT", body=b"v").status == 200
        assert api.request(f"{EC2}/ns/key", header).body == b"v"


def test_a_bad_token_is_refused_even_where_tokens_are_optional(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api:
        reply = api.request(f"{OS}/ns/key", {"X-aws-ec2-metadata-token": "forged"},
                            method="PUT", body=b"v")
        assert reply.status == 401
        assert api.request(f"{OS}/ns/key", method="PUT", body=b"v").status == 200
    assert _stored(store) == {("ns", "key"): "v"}
