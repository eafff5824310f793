"""One owner for every inventory rule: every entry point refuses alike.

Each rule is tried through the single-resource control API and through
``/v1/import`` (both over real HTTP), and through the store's writer
directly; every refusal carries the same status and message on every path,
and ``/v1/export`` is byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.control import RunningControl, running_control
from tests.support.refusals import ok, refused

from cloudseed.errors import CloudseedError
from cloudseed.store import SqlStore


@pytest.fixture
def api(store: SqlStore) -> Iterator[RunningControl]:
    with running_control(store) as running:
        yield running


def _seed(api: RunningControl) -> dict[str, Any]:
    """net1 (10.0.0.0/24) with server a owning one port; net2 with no subnets."""
    ok(api.call("POST", "/v1/networks", {
        "name": "net1", "subnets": [{"name": "v4", "cidr": "10.0.0.0/24"}],
    }), 201)  # fmt: skip
    ok(api.call("POST", "/v1/networks", {"name": "empty"}), 201)
    server = ok(
        api.call("POST", "/v1/servers", {"name": "a", "networks": [{"network": "net1"}]}), 201
    )
    return dict(server["ports"][0])


def _same_refusal(api_error: dict[str, Any], import_error: dict[str, Any], field: str) -> None:
    """Same status and reason; fields differ only by the document's path prefix."""
    assert api_error["status"] == import_error["status"]
    assert api_error["reason"] == import_error["reason"]
    assert api_error["field"].endswith(field)
    assert import_error["field"].endswith(field)


def _document_server(name: str, port: dict[str, Any]) -> dict[str, Any]:
    return {"servers": [{"name": name, "ports": [port]}]}


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda p: {"id": p["id"], "network": "net1"}, id="by-id"),
        pytest.param(lambda p: {"network": "net1", "mac_address": p["mac_address"]}, id="by-mac"),
        pytest.param(
            lambda p: {
                "network": "net1",
                "fixed_ips": [{"ip_address": p["fixed_ips"][0]["ip_address"]}],
            },
            id="by-ip",
        ),
    ],
)
def test_owned_port_is_not_moved_to_another_server_by_any_entry_point(
    api: RunningControl, how: Any
) -> None:
    port = _seed(api)
    by_api = refused(api, "POST", "/v1/servers", {"name": "b", "networks": [{"port": port["id"]}]})
    by_import = refused(api, "POST", "/v1/import", _document_server("b", how(port)))
    assert by_api["status"] == 409
    assert "belongs to server" in by_api["reason"]
    assert port["server_id"] in by_api["reason"]
    _same_refusal(by_api, by_import, "")  # networks[0].port vs servers[0].ports[0]


def test_owned_port_is_not_freed_by_listing_it_unowned_in_a_document(api: RunningControl) -> None:
    port = _seed(api)
    error = refused(api, "POST", "/v1/import", {"ports": [{"id": port["id"], "network": "net1"}]})
    assert error["status"] == 409
    assert "move: true" in error["reason"]


def test_explicit_move_moves_the_port_on_every_entry_point(api: RunningControl) -> None:
    port = _seed(api)
    created = ok(api.call("POST", "/v1/servers", {
        "name": "b", "networks": [{"port": port["id"], "move": True}],
    }), 201)  # fmt: skip
    assert [p["id"] for p in created["ports"]] == [port["id"]]
    assert ok(api.call("GET", f"/v1/ports/{port['id']}"))["server_id"] == created["id"]
    document = _document_server("c", {"id": port["id"], "network": "net1", "move": True})
    ok(api.call("POST", "/v1/import", document))
    moved = ok(api.call("GET", f"/v1/ports/{port['id']}"))
    assert moved["server_id"] == ok(api.call("GET", "/v1/servers/c"))["id"]
    assert moved["fixed_ips"] == port["fixed_ips"]


def test_writer_refuses_a_move_without_the_flag(store: SqlStore, api: RunningControl) -> None:
    port = _seed(api)
    ok(api.call("POST", "/v1/servers", {"name": "b"}), 201)
    b = store.get_server("b")
    stored = store.get_port(port["id"])
    with pytest.raises(CloudseedError, match="belongs to server"), store.write() as writer:
        writer.put_port(dataclasses.replace(stored, server_id=b.id))
    assert store.get_port(port["id"]).server_id == port["server_id"]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.0.0.254", "DHCP port's address"),
        ("10.0.0.1", "the gateway"),
        ("10.0.0.0", "network address"),
        ("10.0.0.255", "broadcast address"),
    ],
)
def test_reserved_addresses_are_refused_alike_everywhere(
    api: RunningControl, address: str, why: str
) -> None:
    _seed(api)
    fixed = [{"ip_address": address}]
    by_port = refused(api, "POST", "/v1/ports", {"network": "net1", "fixed_ips": fixed})
    by_server = refused(api, "POST", "/v1/servers", {
        "name": "b", "networks": [{"network": "net1", "fixed_ip": address}],
    })  # fmt: skip
    by_import = refused(api, "POST", "/v1/import", _document_server(
        "b", {"network": "net1", "fixed_ips": fixed},
    ))  # fmt: skip
    for error in (by_port, by_server, by_import):
        assert why in error["reason"]
        assert error["field"].endswith("ip_address")
    _same_refusal(by_port, by_import, "ip_address")
    _same_refusal(by_server, by_import, "ip_address")


def test_dhcp_port_may_hold_the_dhcp_address(api: RunningControl) -> None:
    _seed(api)
    body = {"name": "dhcp-net1", "network": "net1", "fixed_ips": [{"ip_address": "10.0.0.254"}]}
    assert (
        ok(api.call("POST", "/v1/ports", body), 201)["fixed_ips"][0]["ip_address"] == "10.0.0.254"
    )


def test_router_on_a_network_without_subnets_is_refused_alike(api: RunningControl) -> None:
    _seed(api)
    by_api = refused(api, "POST", "/v1/routers", {"name": "r", "subnets": ["empty"]})
    by_import = refused(
        api, "POST", "/v1/import", {"routers": [{"name": "r", "subnets": ["empty"]}]}
    )
    assert by_api["status"] == 400
    _same_refusal(by_api, by_import, "subnets[0]")


def test_ambiguous_subnet_name_is_refused_alike(api: RunningControl) -> None:
    _seed(api)
    ok(api.call("POST", "/v1/networks", {
        "name": "net2", "subnets": [{"name": "v4", "cidr": "10.1.0.0/24"}],
    }), 201)  # fmt: skip
    by_api = refused(api, "POST", "/v1/routers", {"name": "r", "subnets": ["v4"]})
    by_import = refused(api, "POST", "/v1/import", {"routers": [{"name": "r", "subnets": ["v4"]}]})
    assert by_api["status"] == 409
    _same_refusal(by_api, by_import, "subnets[0]")


@pytest.mark.parametrize(
    "bad_id",
    ["a/b", "a b", "..", ".", "-rf", ".hidden", "x" * 65, "é", "a\nb", "a\x00b", "a%2Fb", ""],
)
def test_bad_ids_are_refused_alike_everywhere(api: RunningControl, bad_id: str) -> None:
    _seed(api)
    by_api = refused(api, "POST", "/v1/servers", {"id": bad_id, "name": "b"})
    by_import = refused(api, "POST", "/v1/import", {"servers": [{"id": bad_id, "name": "b"}]})
    assert by_api["status"] == 400
    _same_refusal(by_api, by_import, "id")
    for path, body in [
        ("/v1/networks", {"id": bad_id, "name": "n"}),
        ("/v1/ports", {"id": bad_id, "network": "net1"}),
        ("/v1/routers", {"id": bad_id, "name": "r"}),
    ]:
        assert refused(api, "POST", path, body)["reason"] == by_api["reason"]
