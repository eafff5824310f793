"""Bulk import/export: idempotent, all-or-nothing, and export re-imports to the same state."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cloudseed.control.bodies import parse_body
from cloudseed.control.bulk import apply_document
from cloudseed.control.document import Document, export_document
from cloudseed.errors import Conflict, Invalid
from cloudseed.store import SqlStore, open_store


def _document(servers: int = 20) -> dict[str, Any]:
    return {
        "networks": [
            {
                "name": "net1",
                "mtu": 1450,
                "subnets": [
                    {"name": "v4", "cidr": "10.0.0.0/16", "dns_nameservers": ["10.0.0.2"]},
                    {"name": "v6", "cidr": "fd00::/64", "ipv6_address_mode": "slaac"},
                ],
            },
            {"name": "isolated", "subnets": [{"cidr": "192.168.0.0/24", "gateway_ip": None}]},
        ],
        "routers": [{"name": "r1", "subnets": ["net1"]}],
        "ports": [
            {"name": "spare", "network": "net1", "fixed_ips": [{"ip_address": "10.0.200.1"}]}
        ],
        "servers": [
            {
                "name": f"vm{i}",
                "metadata": {"index": str(i)},
                "user_data": base64.b64encode(b"#cloud-config\n").decode(),
                "ports": [{"network": "net1", "tag": f"nic{i}"}]
                + ([{"network": "isolated"}] if i % 2 else []),
                "ephemeral_gb": i % 3,
                "swap_mb": 256 * (i % 2),
            }
            for i in range(servers)
        ],
    }


def _apply(store: SqlStore, data: dict[str, Any]) -> Any:
    return apply_document(store, parse_body(Document, data))


def test_import_twice_changes_nothing_the_second_time(store: SqlStore) -> None:
    first = _apply(store, _document())
    assert first.changed
    assert first.created["servers"] == 20
    revision, exported = store.revision(), export_document(store)
    second = _apply(store, _document())
    assert not second.changed
    assert second.revision == revision
    assert export_document(store) == exported
    vm1 = next(s for s in exported["servers"] if s["name"] == "vm1")
    assert (vm1["ephemeral_gb"], vm1["swap_mb"]) == (1, 256)
    assert [p["tag"] for p in vm1["ports"]] == ["nic1", None]


def test_export_reimports_to_the_same_state(store: SqlStore, sqlite_url: str) -> None:
    _apply(store, _document())
    exported = export_document(store)
    assert not _apply(store, exported).changed
    fresh = open_store(sqlite_url.replace(".db", "-copy.db"))
    try:
        _apply(fresh, exported)
        assert export_document(fresh) == exported
    finally:
        fresh.close()


def test_changes_in_a_document_update_only_what_differs(store: SqlStore) -> None:
    _apply(store, _document())
    data = _document()
    data["servers"][3]["metadata"] = {"index": "changed"}
    result = _apply(store, data)
    assert result.changed
    assert result.updated == {"servers": 1}
    assert result.created == {}
    assert store.get_server("vm3").metadata == {"index": "changed"}


def test_allocated_addresses_are_kept_on_reimport(store: SqlStore) -> None:
    _apply(store, _document())
    before = {p.id: p for p in store.list_ports()}
    _apply(store, _document(servers=25))
    after = {p.id: p for p in store.list_ports()}
    assert all(after[pid] == port for pid, port in before.items())
    ips = [f.ip_address for p in after.values() for f in p.fixed_ips]
    assert len(ips) == len(set(ips))


@pytest.mark.parametrize(
    ("mutate", "error", "field"),
    [
        (
            lambda d: d["servers"][137].update(metadata={"bad/key": "v"}),
            Invalid,
            "servers[137].metadata",
        ),
        (
            lambda d: d["servers"][150]["ports"][0].update(
                fixed_ips=[{"ip_address": "10.0.200.1"}]
            ),
            Conflict,
            "servers[150].ports[0].fixed_ips[0].ip_address",
        ),
        (lambda d: d["servers"][199].update(key_name="nope"), Invalid, "servers[199].key_name"),
        (lambda d: d["servers"].append(dict(d["servers"][0])), Invalid, "servers[200].name"),
        (lambda d: d["servers"][42].update(hostname="-bad-"), Invalid, "servers[42].hostname"),
    ],
)
def test_one_invalid_server_among_many_writes_nothing(
    store: SqlStore, mutate: Any, error: type[Exception], field: str
) -> None:
    data = _document(servers=200)
    mutate(data)
    with pytest.raises(error) as err:
        _apply(store, data)
    assert err.value.field.startswith(field)  # type: ignore[attr-defined]
    assert store.revision() == 0
    assert store.list_servers() == []
    assert store.list_networks() == []


def test_invalid_update_of_an_existing_inventory_rolls_back(store: SqlStore) -> None:
    _apply(store, _document())
    revision, exported = store.revision(), export_document(store)
    data = _document()
    data["servers"][0]["metadata"] = {"index": "new"}
    data["servers"][5]["ports"][0]["mac_address"] = "01:00:5e:00:00:01"
    with pytest.raises(Invalid):
        _apply(store, data)
    assert (store.revision(), export_document(store)) == (revision, exported)
