"""``network_data.json`` → network config version 2 (netplan style) for NoCloud.

NoCloud's ``network-config`` is derived from the rendered
``network_data.json`` rather than from the ports, so both drives describe
the same network by construction. The mapping follows what cloud-init's
``convert_net_json`` makes of the same document (anchors §10.1):

- each link becomes an ``ethernets`` entry matched by MAC address, without
  ``set-name``, so the guest keeps its own interface name (cloud-init looks
  the name up by MAC, as it does for OpenStack);
- ``ipv4_dhcp`` → ``dhcp4``; ``ipv6_dhcp`` / ``ipv6_dhcpv6-stateful`` →
  ``dhcp6``; ``ipv6_dhcpv6-stateless`` → ``dhcp6`` and ``accept-ra``;
  ``ipv6_slaac`` → ``accept-ra``;
- static ``ipv4`` / ``ipv6`` → ``addresses`` (``ip/prefix``), the default
  route as ``gateway4`` / ``gateway6``, other routes as ``routes``
  (``to`` / ``via``), and ``nameservers`` from the network's DNS services.
  Netplan calls ``gatewayN`` deprecated but still honours it, and cloud-init
  22.4 (Debian 12) misreads ``to: ::/0`` as ``::/64``: its v2 parser
  normalises routes twice and loses the zero prefix on the way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from cloudseed.errors import Invalid

NETWORK_CONFIG_VERSION = 2
_DHCP4 = frozenset({"ipv4_dhcp"})
_DHCP6 = frozenset({"ipv6_dhcp", "ipv6_dhcpv6-stateful", "ipv6_dhcpv6-stateless"})
_ACCEPT_RA = frozenset({"ipv6_slaac", "ipv6_dhcpv6-stateless"})
_STATIC = frozenset({"ipv4", "ipv6"})


def network_config(network_data: Mapping[str, Any]) -> dict[str, Any]:
    """The version 2 network config describing ``network_data`` (Nova's schema)."""
    ethernets: dict[str, dict[str, Any]] = {}
    for link in network_data.get("links", []):
        entry: dict[str, Any] = {"match": {"macaddress": link["ethernet_mac_address"]}}
        if link.get("mtu"):
            entry["mtu"] = link["mtu"]
        if link["id"] in ethernets:
            # Networks name their link by id; a repeated id cannot be resolved.
            raise Invalid("network_data.links", f"link id {link['id']!r} appears twice")
        ethernets[link["id"]] = entry
    for network in network_data.get("networks", []):
        linked = ethernets.get(network.get("link", ""))
        if linked is not None:
            _add_network(linked, network)
    return {"version": NETWORK_CONFIG_VERSION, "ethernets": ethernets}


def _add_network(entry: dict[str, Any], network: Mapping[str, Any]) -> None:
    kind = network["type"]
    if kind in _DHCP4:
        entry["dhcp4"] = True
    if kind in _DHCP6:
        entry["dhcp6"] = True
    if kind in _ACCEPT_RA:
        entry["accept-ra"] = True
    if kind not in _STATIC:
        # DHCP or router advertisements give the address (and the routes).
        return
    address = f"{network['ip_address']}/{_prefix_length(network['netmask'])}"
    entry.setdefault("addresses", []).append(str(ipaddress.ip_interface(address)))
    for route in network.get("routes", []):
        to = f"{route['network']}/{_prefix_length(route['netmask'])}"
        destination = ipaddress.ip_network(to, strict=False)
        if destination.prefixlen == 0:
            entry.setdefault(f"gateway{destination.version}", route["gateway"])
            continue
        entry.setdefault("routes", []).append({"to": str(destination), "via": route["gateway"]})
    dns = [s["address"] for s in network.get("services", []) if s.get("type") == "dns"]
    if dns:
        servers = entry.setdefault("nameservers", {}).setdefault("addresses", [])
        servers.extend(address for address in dns if address not in servers)


def _prefix_length(netmask: str) -> int:
    """``255.255.255.0`` → 24, ``ffff:ffff:ffff:ffff::`` → 64 (ipaddress reads
    dotted IPv4 masks but no IPv6 ones)."""
    mask = ipaddress.ip_address(netmask)
    bits = f"{int(mask):0{mask.max_prefixlen}b}"
    length = bits.count("1")
    if "0" in bits[:length]:
        raise ValueError(f"{netmask!r} is not a contiguous netmask")
    return length
