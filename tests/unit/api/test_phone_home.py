"""Phone-home POSTs from hostile or confused guests: clear 4xx, nothing stored."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from tests.support.api import api_settings, rich_with, running_api, store_view
from tests.support.samples import RICH

from cloudseed.limits import PHONE_HOME_MAX_BYTES
from cloudseed.model import ImdsOptions, TokenPolicy
from cloudseed.store import SqlStore

GUEST_IP = "127.0.0.1"
PATH = "/openstack/latest/phone_home"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVgdBx3ckJ9xKvvvEnUZvI2R2fDcZyw4zTVNSnY+A1Q"
GOOD = urlencode({"pub_key_ed25519": ED25519 + " root@guest", "pub_key_rsa": "N/A"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"pub_key_ed25519=ssh-rsa+AAAAB3Nza", "pub_key_ed25519"),  # wrong key type
        (b"pub_key_rsa=ssh-rsa+not%24base64", "pub_key_rsa"),
        (b"pub_key_ed25519=ssh-ed25519", "pub_key_ed25519"),  # no key material
        (b"hostname=a%0Ab", "hostname"),  # a newline would forge a known_hosts line
        (b"favourite=colour", "favourite"),
        (b"hostname=a&hostname=b", "hostname"),
        (b"hostname=\xff", "body"),
        (b"pub_key_rsa=ssh-rsa+" + b"A" * 5000, "pub_key_rsa"),
        (b"x" * (PHONE_HOME_MAX_BYTES + 1), "body"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_store_nothing(
    store: SqlStore, body: bytes, field: str
) -> None:
    store_view(store, RICH, guest_ip=GUEST_IP)
    with running_api(store, api_settings(mode="direct")) as api:
        reply = api.request(PATH, method="POST", body=body)
    assert reply.status == 400, reply.body
    assert field in reply.body.decode()
    assert store.get_phone_home(RICH.server.id) is None


def test_only_post(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip=GUEST_IP)
    with running_api(store, api_settings(mode="direct")) as api:
        reply = api.request(PATH)
    assert reply.status == 405
    assert reply.headers.get("allow") == "POST"


def test_tokens_guard_the_post_when_the_server_requires_them(store: SqlStore) -> None:
    view = rich_with(imds=ImdsOptions(tokens=TokenPolicy.REQUIRED))
    store_view(store, view, guest_ip=GUEST_IP)
    with running_api(store, api_settings(mode="direct")) as api:
        refused = api.request(PATH, method="POST", body=GOOD.encode())
        assert refused.status == 401
        assert store.get_phone_home(RICH.server.id) is None
        token = api.request("/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                            method="PUT").body.decode()
        accepted = api.request(PATH, {"X-aws-ec2-metadata-token": token}, method="POST",
                               body=GOOD.encode())
    assert accepted.status == 200, accepted.body
    report = store.get_phone_home(RICH.server.id)
    assert report is not None
    assert report.pub_key_ed25519 == ED25519
    assert report.host_keys() == (ED25519,)


def test_the_ec2_instance_id_names_this_server_too(store: SqlStore) -> None:
    # cloud-init's EC2 datasource reports i-%08x, its OpenStack one the UUID.
    store_view(store, RICH, guest_ip=GUEST_IP)
    ec2_id = f"i-{store.get_server(RICH.server.id).ec2_id:08x}"
    body = urlencode({"instance_id": ec2_id, "pub_key_ed25519": ED25519}).encode()
    with running_api(store, api_settings(mode="direct")) as api:
        wrong = api.request("/latest/phone_home/i-7fffffff", method="POST", body=body)
        assert wrong.status == 403
        assert store.get_phone_home(RICH.server.id) is None
        reply = api.request(f"/latest/phone_home/{ec2_id}", method="POST", body=body)
    assert reply.status == 200, reply.body
    assert store.get_phone_home(RICH.server.id) is not None
