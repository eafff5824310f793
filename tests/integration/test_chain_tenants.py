"""Whole chain, two (three) tenants on the same IP: each gets only its own data.

proxy (built-in or haproxy) → agent → API, on loopback and Unix sockets. The
API is first the echo upstream (what identity reached it), then the real
metadata API (what document the guest got).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from tests.support.chain import GUEST_IP, SECRET, chain
from tests.support.proxy import echoed, header_values
from tests.support.world import UUIDS

from cloudseed.auth.signing import sign_instance_id
from cloudseed.store import SqlStore

IMPLEMENTATIONS = ["builtin", "haproxy", "shared"]
# With the real API at the end: the co-located front too (it is that API, in-process).
REAL_API = [*IMPLEMENTATIONS, "co-located"]
SPOOF = [
    ("X-Instance-ID", UUIDS["b"]),
    ("X-Tenant-ID", "proj-b"),
    ("X-Instance-ID-Signature", "0" * 64),
    ("X-Forwarded-For", "127.0.0.9"),
    ("X-Forwarded-For", GUEST_IP),
    ("Forwarded", "for=127.0.0.9"),
    ("X-Neutron-Router-ID", "rtr-b"),
    ("X-Neutron-Network-ID", "net-b"),
    ("x_instance_id", UUIDS["b"]),
]


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_each_tenant_on_the_same_ip_reaches_the_api_as_its_own_server(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with chain(store, tmp_path, kind) as c:
        for tenant in "abc":
            status, _, body = c.ask(tenant, "/openstack/latest/meta_data.json")
            assert status == 200
            echo = echoed(body)
            assert header_values(echo, "x-instance-id") == [UUIDS[tenant]]
            assert header_values(echo, "x-tenant-id") == [f"proj-{tenant}"]
            assert header_values(echo, "x-instance-id-signature") == [
                sign_instance_id(SECRET.encode(), UUIDS[tenant])
            ]
            assert header_values(echo, "x-forwarded-for") == [GUEST_IP]


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_guest_spoofing_every_identity_header_still_gets_its_own_identity(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with chain(store, tmp_path, kind) as c:
        status, _, body = c.ask("a", "/openstack/latest/meta_data.json", SPOOF)
        assert status == 200
        echo = echoed(body)
        assert header_values(echo, "x-instance-id") == [UUIDS["a"]]
        assert header_values(echo, "x-tenant-id") == ["proj-a"]
        assert header_values(echo, "x-forwarded-for") == [GUEST_IP]


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_unknown_guest_address_is_404(store: SqlStore, tmp_path: Path, kind: str) -> None:
    with chain(store, tmp_path, kind) as c:
        status, _, body = c.ask("b", "/openstack/latest/meta_data.json", source="127.0.0.6")
        assert status == 404
        assert b"127.0.0.6" in body


# -- the real metadata API at the end of the chain ----------------------------------


@pytest.mark.parametrize("kind", REAL_API)
def test_real_api_serves_each_tenant_its_own_metadata(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    pytest.importorskip("cloudseed.api.app")
    with chain(store, tmp_path, kind, api="real") as c:
        for tenant in "abc":
            status, _, body = c.ask(tenant, "/openstack/latest/meta_data.json", SPOOF)
            assert status == 200, body
            meta = json.loads(body)
            assert meta["uuid"] == UUIDS[tenant]
            assert meta["project_id"] == f"proj-{tenant}"
            assert meta["hostname"].startswith(tenant)


@pytest.mark.parametrize("kind", REAL_API)
def test_real_api_statuses_reach_the_guest(store: SqlStore, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("cloudseed.api.app")
    with chain(store, tmp_path, kind, api="real") as c:
        status, headers, _ = c.ask("a", "/openstack/latest/meta_data.json")
        assert status == 200
        etag = headers["etag"]
        status, headers, body = c.ask("a", "/openstack/latest/meta_data.json",
                                      [("If-None-Match", etag)])
        assert status == 304
        assert body == b""
        status, _, _ = c.ask("a", "/openstack/latest/no_such_document")
        assert status == 404
        status, _, _ = c.ask("a", "/openstack/latest/meta_data.json", method="DELETE")
        assert status == 405


@pytest.mark.parametrize("kind", REAL_API)
def test_real_api_session_token_round_trip(store: SqlStore, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("cloudseed.api.app")
    with chain(store, tmp_path, kind, api="real") as c:
        status, headers, token = c.ask(
            "b", "/latest/api/token", [("X-aws-ec2-metadata-token-ttl-seconds", "60")], "PUT"
        )
        assert status == 200, token
        assert headers.get("x-aws-ec2-metadata-token-ttl-seconds") == "60"
        status, _, body = c.ask("b", "/latest/meta-data/instance-id",
                                [("X-aws-ec2-metadata-token", token.decode())])
        assert status == 200
        assert body.decode().startswith("i-")
        # A token from tenant b is worthless to tenant a on the same IP.
        status, _, _ = c.ask("a", "/latest/meta-data/instance-id",
                             [("X-aws-ec2-metadata-token", token.decode())])
        assert status == 401
        # A token PUT carrying a guest X-Forwarded-For is refused at the proxy.
        status, _, _ = c.ask("b", "/latest/api/token",
                             [("X-aws-ec2-metadata-token-ttl-seconds", "60"),
                              ("X-Forwarded-For", GUEST_IP)], "PUT")
        assert status == 400


@pytest.mark.parametrize("kind", REAL_API)
def test_phone_home_through_the_chain_is_stored_for_the_identified_server_only(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVgdBx3ckJ9xKvvvEnUZvI2R2fDcZyw4zTVNSnY+A1Q"
    form = urlencode({"instance_id": UUIDS["a"], "hostname": "a", "pub_key_ed25519": key})
    with chain(store, tmp_path, kind, api="real") as c:
        # Tenant b's guest (same IP) claims tenant a's instance: refused, nothing stored.
        status, _, body = c.ask("b", "/openstack/latest/phone_home", SPOOF, method="POST",
                                body=form.encode())
        assert status == 403, body
        assert store.get_phone_home(UUIDS["a"]) is None
        assert store.get_phone_home(UUIDS["b"]) is None
        status, _, body = c.ask("a", f"/latest/phone_home/{UUIDS['a']}", method="POST",
                                body=form.encode())
        assert status == 200, body
    report = store.get_phone_home(UUIDS["a"])
    assert report is not None
    assert report.pub_key_ed25519 == key
    assert store.get_phone_home(UUIDS["b"]) is None


@pytest.mark.parametrize("kind", REAL_API)
def test_password_post_is_stored_once_for_the_identified_server_only(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with chain(store, tmp_path, kind, api="real") as c:
        status, _, body = c.ask("b", "/openstack/latest/password", SPOOF, method="POST",
                                body=b"secret-of-b")
        assert status == 200, body
        assert store.get_password(UUIDS["b"]) == "secret-of-b"
        assert store.get_password(UUIDS["a"]) == ""
        assert c.ask("b", "/openstack/latest/password")[2] == b"secret-of-b"
        assert c.ask("a", "/openstack/latest/password")[2] == b""
        # Write-once: a second POST is refused and changes nothing.
        assert c.ask("b", "/openstack/latest/password", method="POST", body=b"other")[0] == 409
        assert store.get_password(UUIDS["b"]) == "secret-of-b"
