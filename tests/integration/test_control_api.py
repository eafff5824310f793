"""The control API over real HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from tests.support.control import Reply, RunningControl, running_control
from tests.support.keygen import ssh_public_key

from cloudseed.control.routes import ROUTES
from cloudseed.control.schemas import ErrorOut, HealthOut
from cloudseed.limits import (
    MAX_INJECTED_FILE_BYTES,
    MAX_INJECTED_FILES,
    MAX_METADATA_ITEMS,
    MAX_METADATA_VALUE_CHARS,
    MAX_USER_DATA_BASE64_CHARS,
)
from cloudseed.model import GuestAttribute
from cloudseed.store import SqlStore


@pytest.fixture
def api(store: SqlStore) -> Iterator[RunningControl]:
    with running_control(store) as running:
        yield running


def _ok(reply: Reply, status: int = 200) -> Any:
    assert reply.status == status, reply.body
    return reply.json() if reply.body else None


def _network(api: RunningControl, name: str = "net1", cidr: str = "10.0.0.0/24") -> Any:
    body = {"name": name, "subnets": [{"name": f"{name}-v4", "cidr": cidr}]}
    return _ok(api.call("POST", "/v1/networks", body), 201)


# -- resources ------------------------------------------------------------------


def test_network_and_subnets_by_id_and_name(api: RunningControl) -> None:
    net = _network(api)
    assert net["subnets"][0]["gateway_ip"] == "10.0.0.1"
    assert _ok(api.call("GET", "/v1/networks/net1"))["id"] == net["id"]
    assert _ok(api.call("GET", f"/v1/networks/{net['id']}"))["name"] == "net1"
    v6 = {"cidr": "fd00::/64", "ipv6_address_mode": "slaac", "name": "v6"}
    _ok(api.call("POST", "/v1/networks/net1/subnets", v6), 201)
    listed = _ok(api.call("GET", "/v1/networks/net1/subnets"))["subnets"]
    assert {s["cidr"] for s in listed} == {"10.0.0.0/24", "fd00::/64"}
    overlap = api.call("POST", "/v1/networks/net1/subnets", {"cidr": "10.0.0.128/25"})
    assert overlap.status == 409
    assert _ok(api.call("GET", "/v1/subnets/v6"))["ip_version"] == 6
    _ok(api.call("DELETE", "/v1/subnets/v6"), 204)
    _ok(api.call("DELETE", "/v1/networks/net1"), 204)
    assert api.call("GET", "/v1/networks/net1").status == 404
    assert _ok(api.call("GET", "/v1/subnets"))["subnets"] == []


def test_router_attaches_subnets_by_network_or_subnet(api: RunningControl) -> None:
    net = _network(api)
    _network(api, "net2", "10.1.0.0/24")
    router = _ok(api.call("POST", "/v1/routers", {"name": "r1"}), 201)
    router = _ok(api.call("POST", "/v1/routers/r1/subnets", {"subnet": "net1"}))
    assert router["subnet_ids"] == [net["subnets"][0]["id"]]
    router = _ok(api.call("POST", "/v1/routers/r1/subnets", {"subnet": "net2-v4"}))
    assert len(router["subnet_ids"]) == 2
    again = api.call("POST", "/v1/routers/r1/subnets", {"subnet": "net1"})
    assert again.status == 409
    assert api.call("DELETE", "/v1/subnets/net1-v4").status == 409  # routed
    router = _ok(api.call("DELETE", "/v1/routers/r1/subnets/net1-v4"))
    assert len(router["subnet_ids"]) == 1
    assert [r["name"] for r in _ok(api.call("GET", "/v1/routers"))["routers"]] == ["r1"]
    _ok(api.call("DELETE", "/v1/routers/r1"), 204)


def test_server_gets_next_free_ip_and_a_neutron_mac(api: RunningControl) -> None:
    _network(api)
    first = _ok(
        api.call("POST", "/v1/servers", {"name": "Web 1", "networks": [{"network": "net1"}]}), 201
    )
    second = _ok(
        api.call("POST", "/v1/servers", {"name": "web2", "networks": [{"network": "net1"}]}), 201
    )
    assert first["hostname"] == "web-1"
    assert first["ports"][0]["fixed_ips"][0]["ip_address"] == "10.0.0.2"
    assert second["ports"][0]["fixed_ips"][0]["ip_address"] == "10.0.0.3"
    assert first["ports"][0]["mac_address"].startswith("fa:16:3e:")
    assert first["ec2_id"] != second["ec2_id"]
    taken = api.call(
        "POST",
        "/v1/servers",
        {"name": "web3", "networks": [{"network": "net1", "fixed_ip": "10.0.0.3"}]},
    )
    assert taken.status == 409
    assert taken.json()["field"] == "networks[0].fixed_ips[0].ip_address"
    dup_mac = api.call(
        "POST",
        "/v1/servers",
        {
            "name": "web3",
            "networks": [
                {"network": "net1", "mac_address": first["ports"][0]["mac_address"].upper()}
            ],
        },
    )
    assert dup_mac.status == 409
    assert dup_mac.json()["field"] == "networks[0].mac_address"
    _ok(api.call("DELETE", "/v1/servers/web2"), 204)
    assert _ok(api.call("GET", "/v1/ports?network=net1"))["ports"] == first["ports"]


def test_server_on_an_existing_port_which_then_has_one_owner(api: RunningControl) -> None:
    _network(api)
    port = _ok(
        api.call(
            "POST",
            "/v1/ports",
            {
                "name": "p1",
                "network": "net1",
                "fixed_ips": [{"ip_address": "10.0.0.50"}],
                "mac_address": "FA:16:3E:00:00:50",
            },
        ),
        201,
    )
    assert port["mac_address"] == "fa:16:3e:00:00:50"
    server = _ok(api.call("POST", "/v1/servers", {"name": "vm", "networks": [{"port": "p1"}]}), 201)
    assert server["ports"][0]["id"] == port["id"]
    second = api.call("POST", "/v1/servers", {"name": "vm2", "networks": [{"port": "p1"}]})
    assert second.status == 409
    assert api.call("DELETE", "/v1/ports/p1").status == 409
    _ok(api.call("DELETE", "/v1/servers/vm?keep_ports=true"), 204)
    assert _ok(api.call("GET", "/v1/ports/p1"))["server_id"] is None
    _ok(api.call("DELETE", "/v1/ports/p1"), 204)


def test_server_fields_round_trip(api: RunningControl, tmp_path: Path) -> None:
    _network(api)
    key = ssh_public_key(tmp_path)
    _ok(api.call("POST", "/v1/keypairs", {"name": "k1", "public_key": key}), 201)
    body = {
        "name": "full",
        "hostname": "full.example.org",
        "key_name": "k1",
        "user_data": base64.b64encode(b"#cloud-config\n").decode(),
        "files": [{"path": "/etc/motd", "contents": base64.b64encode(b"hi").decode()}],
        "metadata": {"role": "db"},
        "config_drive": True,
        "availability_zone": "az1",
        "imds": {"tokens": "required", "endpoint": "enabled", "hop_limit": 3, "tags": True},
        "project_id": "p1",
        "networks": [{"network": "net1"}],
    }
    server = _ok(api.call("POST", "/v1/servers", body), 201)
    shown = _ok(api.call("GET", f"/v1/servers/{server['id']}"))
    assert shown == server
    for field in ("hostname", "key_name", "user_data", "files", "metadata", "imds", "project_id"):
        expected = body[field] if field != "hostname" else "full.example.org"
        assert shown[field] == expected
    assert api.call("DELETE", "/v1/keypairs/k1").status == 409  # in use
    patched = _ok(api.call("PATCH", "/v1/servers/full", {"name": "renamed", "config_drive": False}))
    assert (patched["name"], patched["config_drive"]) == ("renamed", False)


def test_keypairs(api: RunningControl, tmp_path: Path) -> None:
    key = ssh_public_key(tmp_path)
    created = _ok(api.call("POST", "/v1/keypairs", {"name": "k1", "public_key": key}), 201)
    assert created["type"] == "ssh"
    assert len(created["fingerprint"].split(":")) == 16
    assert api.call("POST", "/v1/keypairs", {"name": "k1", "public_key": key}).status == 409
    assert _ok(api.call("GET", "/v1/keypairs"))["keypairs"] == [created]
    _ok(api.call("DELETE", "/v1/keypairs/k1"), 204)
    assert api.call("GET", "/v1/keypairs/k1").status == 404


def test_password_show_and_clear(api: RunningControl, store: SqlStore) -> None:
    server = _ok(api.call("POST", "/v1/servers", {"name": "vm"}), 201)
    assert _ok(api.call("GET", "/v1/servers/vm/password")) == {"password": ""}
    assert store.set_password_once(server["id"], "c2VjcmV0")
    assert _ok(api.call("GET", "/v1/servers/vm/password")) == {"password": "c2VjcmV0"}
    _ok(api.call("DELETE", "/v1/servers/vm/password"), 204)
    assert _ok(api.call("GET", "/v1/servers/vm/password")) == {"password": ""}


# -- Nova's server metadata semantics -------------------------------------------------


def test_metadata_get_replace_merge(api: RunningControl) -> None:
    _ok(api.call("POST", "/v1/servers", {"name": "vm", "metadata": {"a": "1", "b": "2"}}), 201)
    assert _ok(api.call("GET", "/v1/servers/vm/metadata")) == {"metadata": {"a": "1", "b": "2"}}
    merged = _ok(api.call("POST", "/v1/servers/vm/metadata", {"metadata": {"b": "3", "c": "4"}}))
    assert merged == {"metadata": {"a": "1", "b": "3", "c": "4"}}
    replaced = _ok(api.call("PUT", "/v1/servers/vm/metadata", {"metadata": {"z": "9"}}))
    assert replaced == {"metadata": {"z": "9"}}
    assert _ok(api.call("GET", "/v1/servers/vm/metadata")) == {"metadata": {"z": "9"}}


def test_metadata_single_items(api: RunningControl) -> None:
    _ok(api.call("POST", "/v1/servers", {"name": "vm", "metadata": {"a": "1"}}), 201)
    assert _ok(api.call("GET", "/v1/servers/vm/metadata/a")) == {"meta": {"a": "1"}}
    assert api.call("GET", "/v1/servers/vm/metadata/nope").status == 404
    key = "with space:and.dots"
    path = "/v1/servers/vm/metadata/with%20space%3Aand.dots"
    assert _ok(api.call("PUT", path, {"meta": {key: "v"}})) == {"meta": {key: "v"}}
    mismatch = api.call("PUT", "/v1/servers/vm/metadata/a", {"meta": {"b": "2"}})
    assert (mismatch.status, mismatch.json()["field"]) == (400, "meta")
    too_many = api.call("PUT", "/v1/servers/vm/metadata/a", {"meta": {"a": "2", "b": "2"}})
    assert too_many.status == 400
    _ok(api.call("DELETE", "/v1/servers/vm/metadata/a"), 204)
    assert api.call("DELETE", "/v1/servers/vm/metadata/a").status == 404
    assert _ok(api.call("GET", "/v1/servers/vm/metadata")) == {"metadata": {key: "v"}}


# -- limits: a clear 4xx naming field and limit, and nothing written ------------------------

FULL = {f"k{i}": "v" for i in range(MAX_METADATA_ITEMS)}
LIMIT_CASES: list[tuple[str, str, Any, int, str | None, Any]] = [
    (
        "POST",
        "/v1/servers",
        {"name": "x", "metadata": {**FULL, "one": "more"}},
        400,
        "metadata",
        MAX_METADATA_ITEMS,
    ),
    (
        "POST",
        "/v1/servers/vm/metadata",
        {"metadata": {"one": "more"}},
        400,
        "metadata",
        MAX_METADATA_ITEMS,
    ),
    (
        "PUT",
        "/v1/servers/vm/metadata/new",
        {"meta": {"new": "v"}},
        400,
        "metadata",
        MAX_METADATA_ITEMS,
    ),
    (
        "PUT",
        "/v1/servers/vm/metadata",
        {"metadata": {"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}},
        400,
        "metadata.k",
        MAX_METADATA_VALUE_CHARS,
    ),
    (
        "PUT",
        "/v1/servers/vm/metadata",
        {"metadata": {"bad/key": "v"}},
        400,
        "metadata.bad/key (key)",
        None,
    ),
    (
        "POST",
        "/v1/servers",
        {"name": "x", "user_data": "A" * (MAX_USER_DATA_BASE64_CHARS + 1)},
        400,
        "user_data",
        MAX_USER_DATA_BASE64_CHARS,
    ),
    (
        "POST",
        "/v1/servers",
        {
            "name": "x",
            "files": [{"path": f"/{i}", "contents": ""} for i in range(MAX_INJECTED_FILES + 1)],
        },
        400,
        "files",
        MAX_INJECTED_FILES,
    ),
    (
        "POST",
        "/v1/servers",
        {
            "name": "x",
            "files": [
                {
                    "path": "/f",
                    "contents": base64.b64encode(b"x" * (MAX_INJECTED_FILE_BYTES + 1)).decode(),
                }
            ],
        },
        400,
        "files[0].contents",
        MAX_INJECTED_FILE_BYTES,
    ),
    ("POST", "/v1/servers", {"name": "x", "hostname": "bad_host"}, 400, "hostname", None),
    (
        "POST",
        "/v1/servers",
        {"name": "x", "networks": [{"network": "net1", "fixed_ip": "10.9.0.5"}]},
        400,
        "networks[0].fixed_ips[0].ip_address",
        None,
    ),
    (
        "POST",
        "/v1/servers",
        {"name": "x", "networks": [{"network": "net1", "fixed_ip": "10.0.0.1"}]},
        409,
        "networks[0].fixed_ips[0].ip_address",
        None,
    ),
    (
        "POST",
        "/v1/servers",
        {"name": "x", "networks": [{"network": "net1", "mac_address": "01:00:5e:00:00:01"}]},
        400,
        "networks[0].mac_address",
        None,
    ),
    # The second NIC fails after the server row was written: all of it must roll back.
    (
        "POST",
        "/v1/servers",
        {"name": "x", "networks": [{"network": "net1"}, {"network": "nope"}]},
        404,
        None,
        None,
    ),
    ("POST", "/v1/servers", {"name": "vm"}, 409, "name", None),
    ("POST", "/v1/servers", {"name": "x", "key_name": "missing"}, 404, None, None),
    ("POST", "/v1/keypairs", {"name": "k", "public_key": "ssh-rsa AAAA"}, 400, "public_key", None),
    (
        "POST",
        "/v1/networks",
        {"name": "n", "subnets": [{"cidr": "10.0.0.1/24"}]},
        400,
        "subnets[0].cidr",
        None,
    ),
    (
        "POST",
        "/v1/networks",
        {"name": "n", "subnets": [{"cidr": "10.0.0.0/24", "gateway_ip": "10.1.0.1"}]},
        400,
        "subnets[0].gateway_ip",
        None,
    ),
    ("POST", "/v1/networks", {"name": "n", "mtu": 100000}, 400, "mtu", None),
    (
        "POST",
        "/v1/ports",
        {"network": "net1", "fixed_ips": [{"ip_address": "10.0.0.2"}]},
        409,
        "port.fixed_ips[0].ip_address",
        None,
    ),
]


def _snapshot(api: RunningControl) -> tuple[int, Any]:
    return api.store.revision(), _ok(api.call("GET", "/v1/export"))


def test_every_limit_is_a_clear_4xx_and_leaves_the_store_unchanged(api: RunningControl) -> None:
    _network(api)
    _ok(
        api.call(
            "POST",
            "/v1/servers",
            {"name": "vm", "metadata": FULL, "networks": [{"network": "net1"}]},
        ),
        201,
    )
    before = _snapshot(api)
    for method, path, body, status, field, limit in LIMIT_CASES:
        reply = api.call(method, path, body)
        assert reply.status == status, (
            path,
            body if len(json.dumps(body)) < 300 else "...",
            reply.body,
        )
        error = reply.json()
        TypeAdapter(ErrorOut).validate_python(error)
        if field is not None:
            assert error["field"] == field, error
        if limit is not None:
            assert error["limit"] == limit, error
            assert str(limit) in error["message"], error
        assert _snapshot(api) == before, (path, error)


def test_large_bodies_are_refused_with_413_not_parsed(api: RunningControl) -> None:
    # The control API accepts large imports, but not past its body limit.
    from cloudseed.control.api import MAX_CONTROL_BODY_BYTES

    assert MAX_CONTROL_BODY_BYTES >= 64 * 1024 * 1024


# -- auth, health, metrics ---------------------------------------------------------------


def test_auth_none_is_401_wrong_is_403_right_is_200(api: RunningControl) -> None:
    missing = api.call("GET", "/v1/servers", token=None)
    assert missing.status == 401
    assert missing.headers.get("WWW-Authenticate") == "Bearer"
    assert api.call("GET", "/v1/servers", token="wrong").status == 403
    assert api.call("GET", "/v1/servers", token=api.token + "x").status == 403
    assert api.call("GET", "/v1/servers").status == 200
    assert api.call("POST", "/v1/networks", {"name": "n"}, token=None).status == 401
    assert api.store.list_networks() == []


def test_health_and_openapi_need_no_token(api: RunningControl) -> None:
    health = api.call("GET", "/healthz", token=None)
    TypeAdapter(HealthOut).validate_json(health.body)
    assert api.call("GET", "/v1/openapi.json", token=None).json()["openapi"] == "3.1.0"


def test_unknown_path_is_404_and_wrong_method_is_405(api: RunningControl) -> None:
    assert api.call("GET", "/v1/nothing").status == 404
    wrong = api.call("PATCH", "/v1/networks")
    assert wrong.status == 405
    assert "GET" in wrong.headers["Allow"]


def test_metrics_count_requests_by_route_and_status(api: RunningControl) -> None:
    api.call("GET", "/v1/servers/nope")
    api.call("GET", "/v1/servers", token=None)
    text = api.call("GET", "/metrics", token=None).body.decode()
    assert (
        'cloudseed_control_requests_total{route="/v1/servers/{server}",method="GET",status="404"} 1'
        in text
    )
    assert 'route="/v1/servers",method="GET",status="401"' in text
    assert "cloudseed_control_request_seconds_bucket" in text


# -- OpenAPI: real responses validate against the document's models ------------------------


def test_real_responses_match_the_openapi_models(api: RunningControl, tmp_path: Path) -> None:
    _network(api)
    _ok(api.call("POST", "/v1/routers", {"name": "r1", "subnets": ["net1"]}), 201)
    _ok(
        api.call("POST", "/v1/keypairs", {"name": "k1", "public_key": ssh_public_key(tmp_path)}),
        201,
    )
    _ok(api.call("POST", "/v1/ports", {"name": "p1", "network": "net1"}), 201)
    _ok(
        api.call(
            "POST",
            "/v1/servers",
            {"name": "vm", "key_name": "k1", "networks": [{"network": "net1"}]},
        ),
        201,
    )
    values = {
        "network": "net1",
        "subnet": "net1-v4",
        "router": "r1",
        "port": "p1",
        "server": "vm",
        "keypair": "k1",
        "key": "a",
        "namespace": "ns",
    }
    _ok(api.call("PUT", "/v1/servers/vm/metadata/a", {"meta": {"a": "1"}}))
    server_id = api.store.get_server("vm").id
    with api.store.write() as writer:  # what a guest writes through the metadata API
        writer.put_guest_attribute(GuestAttribute(server_id, "ns", "a", "1", ""), now=0.0)
    document = api.call("GET", "/v1/openapi.json").json()
    checked = 0
    for route in ROUTES:
        if route.method != "GET" or route.response is None:
            continue
        path = route.pattern
        for name, value in values.items():
            path = path.replace("{" + name + "}", value)
        reply = api.call("GET", path)
        assert reply.status == route.status, (path, reply.body)
        route.response.model_validate_json(reply.body)
        assert route.pattern in document["paths"]
        ref = document["paths"][route.pattern]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]
        checked += 1
    assert checked >= 15


def test_port_tags_and_flavor_disks_round_trip_and_reach_the_guest_view(
    api: RunningControl,
) -> None:
    _network(api)
    port = _ok(api.call("POST", "/v1/ports", {"name": "p1", "network": "net1", "tag": "data"}), 201)
    assert port["tag"] == "data"
    body = {
        "name": "vm",
        "root_gb": 20,
        "ephemeral_gb": 5,
        "swap_mb": 512,
        "networks": [{"port": "p1"}, {"network": "net1", "tag": "mgmt ü"}, {"network": "net1"}],
    }
    server = _ok(api.call("POST", "/v1/servers", body), 201)
    assert (server["root_gb"], server["ephemeral_gb"], server["swap_mb"]) == (20, 5, 512)
    assert [p["tag"] for p in server["ports"]] == ["data", "mgmt ü", None]
    assert _ok(api.call("GET", "/v1/servers/vm")) == server


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/ports", {"network": "net1", "tag": "a,b"}, "tag"),
        ("/v1/ports", {"network": "net1", "tag": "a/b"}, "tag"),
        ("/v1/ports", {"network": "net1", "tag": "x" * 61}, "tag"),
        ("/v1/ports", {"network": "net1", "tag": ""}, "tag"),
        ("/v1/servers", {"name": "v", "networks": [{"network": "net1", "tag": 7}]}, "tag"),
        ("/v1/servers", {"name": "v", "ephemeral_gb": -1}, "ephemeral_gb"),
        ("/v1/servers", {"name": "v", "swap_mb": 2**40}, "swap_mb"),
        ("/v1/servers", {"name": "v", "root_gb": "big"}, "root_gb"),
        ("/v1/servers", {"name": "v", "imds": {"hop_limit": 0}}, "imds.hop_limit"),
        ("/v1/servers", {"name": "v", "imds": {"hop_limit": 65}}, "imds.hop_limit"),
        ("/v1/servers", {"name": "v", "imds": {"hop_limit": "2x"}}, "imds.hop_limit"),
        ("/v1/servers", {"name": "v", "imds": {"tags": "maybe"}}, "imds.tags"),
    ],
)
def test_bad_tags_and_disk_sizes_are_400_naming_the_field(
    api: RunningControl, path: str, body: Any, field: str
) -> None:
    _network(api)
    before = _snapshot(api)
    reply = api.call("POST", path, body)
    assert reply.status == 400, reply.body
    assert field in reply.json()["field"], reply.json()
    assert _snapshot(api) == before
