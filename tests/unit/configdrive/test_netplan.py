from __future__ import annotations

import json

import pytest
from tests.support.configdrive_sample import EMPTY_VIEW, VIEW

from cloudseed.configdrive.netplan import network_config
from cloudseed.errors import Invalid
from cloudseed.render.network_data import build_network_data


def _link(link_id: str, mac: str, mtu: int | None = None) -> dict[str, object]:
    return {"id": link_id, "vif_id": "v", "type": "bridge", "mtu": mtu, "ethernet_mac_address": mac}


def test_links_match_by_mac_and_keep_the_guest_name() -> None:
    config = network_config({"links": [_link("tap1", "fa:16:3e:00:00:01")], "networks": []})
    assert config == {
        "version": 2,
        "ethernets": {"tap1": {"match": {"macaddress": "fa:16:3e:00:00:01"}}},
    }


def test_mtu_is_set_only_when_known() -> None:
    config = network_config({"links": [_link("a", "m1", 9000), _link("b", "m2")], "networks": []})
    assert config["ethernets"]["a"]["mtu"] == 9000
    assert "mtu" not in config["ethernets"]["b"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ipv4_dhcp", {"dhcp4": True}),
        ("ipv6_dhcp", {"dhcp6": True}),
        ("ipv6_dhcpv6-stateful", {"dhcp6": True}),
        ("ipv6_dhcpv6-stateless", {"dhcp6": True, "accept-ra": True}),
        ("ipv6_slaac", {"accept-ra": True}),
    ],
)
def test_dynamic_networks(kind: str, expected: dict[str, object]) -> None:
    config = network_config(
        {"links": [_link("a", "m")], "networks": [{"id": "n0", "type": kind, "link": "a"}]}
    )
    entry = dict(config["ethernets"]["a"])
    entry.pop("match")
    assert entry == expected


def test_static_networks_give_addresses_routes_and_dns() -> None:
    data = build_network_data(VIEW)
    entry = network_config(data)["ethernets"]["tapb0a7e002-6d"]
    assert entry["addresses"] == ["192.168.50.10/24", "2001:db8:50::10/64"]
    assert entry["gateway4"] == "192.168.50.1"
    assert entry["gateway6"] == "2001:db8:50::1"
    assert entry["routes"] == [{"to": "172.16.0.0/12", "via": "192.168.50.254"}]
    assert entry["nameservers"] == {"addresses": ["192.168.50.53", "9.9.9.9"]}


def test_no_ports_give_no_interfaces() -> None:
    data = json.loads(json.dumps(build_network_data(EMPTY_VIEW)))
    assert network_config(data) == {"version": 2, "ethernets": {}}
    assert network_config({}) == {"version": 2, "ethernets": {}}


def test_repeated_link_id_is_refused() -> None:
    with pytest.raises(Invalid):
        network_config({"links": [_link("a", "m1"), _link("a", "m2")], "networks": []})
