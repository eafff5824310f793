"""network_data.json from ports: links, networks, services (anchors §1.4)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from tests.support.samples import BARE, DHCP_NET, RICH, STATIC_NET, STATIC_V6

from cloudseed.model import FixedIp, Ipv6Mode, Port, PortView, ServerView, Subnet
from cloudseed.render.network_data import build_network_data, link_name


def _data(view: ServerView) -> dict[str, Any]:
    return build_network_data(view)


def test_no_ports_gives_three_empty_lists() -> None:
    assert _data(BARE) == {"links": [], "networks": [], "services": []}


def test_links_are_tap_devices_of_type_bridge() -> None:
    links = _data(RICH)["links"]
    assert [link["id"] for link in links] == ["tapa1b2c3d4-e5", "tapb2c3d4e5-f6"]
    assert [link["vif_id"] for link in links] == [pv.port.id for pv in RICH.ports]
    assert {link["type"] for link in links} == {"bridge"}
    assert [link["ethernet_mac_address"] for link in links] == [
        "fa:16:3e:00:00:01",
        "fa:16:3e:00:00:02",
    ]
    assert link_name("0123456789abcdef") == "tap0123456789a"


def test_mtu_is_null_on_dhcp_networks_and_the_network_mtu_otherwise() -> None:
    links = _data(RICH)["links"]
    assert links[0]["mtu"] is None
    assert links[1]["mtu"] == STATIC_NET.mtu


def test_dhcp_ipv4_network_says_only_dhcp() -> None:
    network = _data(RICH)["networks"][0]
    assert network == {
        "id": "network0",
        "type": "ipv4_dhcp",
        "link": "tapa1b2c3d4-e5",
        "network_id": DHCP_NET.id,
    }


def test_static_ipv4_network_has_address_routes_and_dns() -> None:
    network = _data(RICH)["networks"][1]
    assert network["type"] == "ipv4"
    assert network["ip_address"] == "192.168.50.10"
    assert network["netmask"] == "255.255.255.0"
    assert network["routes"] == [
        {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.50.1"},
        {"network": "172.16.0.0", "netmask": "255.255.0.0", "gateway": "192.168.50.254"},
    ]
    assert network["services"] == [
        {"type": "dns", "address": "192.168.50.2"},
        {"type": "dns", "address": "10.0.0.2"},
    ]


def test_static_ipv6_network_has_default_route() -> None:
    network = _data(RICH)["networks"][2]
    assert network["id"] == "network2"
    assert network["type"] == "ipv6"
    assert network["link"] == "tapb2c3d4e5-f6"
    assert network["netmask"] == "ffff:ffff:ffff:ffff::"
    assert network["routes"] == [{"network": "::", "netmask": "::", "gateway": "2001:db8:50::1"}]


def test_services_are_deduplicated_in_first_seen_order() -> None:
    assert _data(RICH)["services"] == [
        {"type": "dns", "address": "10.0.0.2"},
        {"type": "dns", "address": "192.168.50.2"},
        {"type": "dns", "address": "2001:db8:50::53"},
    ]


def _v6_view(subnet: Subnet) -> ServerView:
    port = Port(
        id="dddddddd-0000-4000-8000-000000000004",
        network_id=STATIC_NET.id,
        mac_address="fa:16:3e:00:00:04",
        fixed_ips=(FixedIp(subnet_id=subnet.id, ip_address="2001:db8:50::44"),),
    )
    return dataclasses.replace(
        RICH, ports=(PortView(port=port, network=STATIC_NET, subnets=(subnet,)),)
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Ipv6Mode.SLAAC, "ipv6_slaac"),
        (Ipv6Mode.DHCPV6_STATEFUL, "ipv6_dhcpv6-stateful"),
        (Ipv6Mode.DHCPV6_STATELESS, "ipv6_dhcpv6-stateless"),
    ],
)
def test_ipv6_address_mode_names_the_network_type(mode: Ipv6Mode, expected: str) -> None:
    subnet = dataclasses.replace(STATIC_V6, ipv6_address_mode=mode, enable_dhcp=True)
    network = _data(_v6_view(subnet))["networks"][0]
    assert network["type"] == expected
    assert network["ip_address"] == "2001:db8:50::44"


def test_ipv6_dhcp_without_address_mode_is_ipv6_dhcp() -> None:
    subnet = dataclasses.replace(STATIC_V6, enable_dhcp=True)
    network = _data(_v6_view(subnet))["networks"][0]
    assert network["type"] == "ipv6_dhcp"
    assert "ip_address" not in network


def test_only_the_first_subnet_of_each_family_is_used() -> None:
    second = dataclasses.replace(STATIC_V6, id="eeee", cidr="2001:db8:51::/64")
    port = dataclasses.replace(
        RICH.ports[1].port,
        fixed_ips=(*RICH.ports[1].port.fixed_ips, FixedIp("eeee", "2001:db8:51::10")),
    )
    port_view = dataclasses.replace(
        RICH.ports[1], port=port, subnets=(*RICH.ports[1].subnets, second)
    )
    view = dataclasses.replace(RICH, ports=(port_view,))
    assert [n["type"] for n in _data(view)["networks"]] == ["ipv4", "ipv6"]


def test_port_without_subnets_has_no_link_and_does_not_shift_numbering() -> None:
    empty = PortView(
        port=Port(id="ffff0000-0000", network_id="n", mac_address="fa:16:3e:00:00:09"),
        network=DHCP_NET,
        subnets=(),
    )
    view = dataclasses.replace(RICH, ports=(empty, *RICH.ports))
    data = _data(view)
    assert len(data["links"]) == 2
    assert data["networks"][0]["id"] == "network0"
