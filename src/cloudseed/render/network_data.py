"""``network_data.json``: Nova's network description, built from the ports.

Follows ``nova/virt/netutils.py:get_network_metadata`` (anchors §1.4), which
cloud-init's ``convert_net_json`` reads:

- one link per port that has subnets: ``id`` is the Neutron tap name
  ``tap<port id[:11]>``; ``type`` is ``bridge``, the VIF type Nova reports for
  a tap on a Linux bridge, which is our data plane (DESIGN §5); ``mtu`` is
  null when one of the port's subnets has DHCP (the guest learns it there)
  and the network's MTU otherwise;
- per port, one network for its first IPv4 subnet and one for its first IPv6
  subnet (Nova's limitation, kept so both trees agree), numbered
  ``network0``, ``network1``… across ports;
- DNS servers as services, per static network and de-duplicated globally.

With no ports we render ``{"links": [], "networks": [], "services": []}``
where Nova renders ``{}``: Nova's own schema requires all three keys, and
cloud-init converts both to the same empty configuration.
"""

from __future__ import annotations

import ipaddress

from cloudseed.model import IpVersion, PortView, ServerView, Subnet

_DEFAULT_ROUTE = {
    IpVersion.V4: ("0.0.0.0", "0.0.0.0"),  # noqa: S104 - a route, not a bind
    IpVersion.V6: ("::", "::"),
}


def link_name(port_id: str) -> str:
    """The tap device Neutron names for a port (IFNAMSIZ keeps it to 14)."""
    return "tap" + port_id[:11]


def build_network_data(view: ServerView) -> dict[str, object]:
    links: list[dict[str, object]] = []
    networks: list[dict[str, object]] = []
    services: list[dict[str, str]] = []
    for port_view in view.ports:
        firsts = [
            subnet
            for version in (IpVersion.V4, IpVersion.V6)
            if (subnet := _first_subnet(port_view, version)) is not None
        ]
        if not firsts:
            continue
        link = _link(port_view)
        links.append(link)
        for subnet in firsts:
            address = _first_address(port_view, subnet)
            if address is None:
                continue
            networks.append(_network(port_view, subnet, address, len(networks), str(link["id"])))
            for service in _dns_services(subnet):
                if service not in services:
                    services.append(service)
    return {"links": links, "networks": networks, "services": services}


def _first_subnet(port_view: PortView, version: int) -> Subnet | None:
    return next((s for s in port_view.subnets if s.ip_version == version), None)


def _first_address(port_view: PortView, subnet: Subnet) -> str | None:
    return next((f.ip_address for f in port_view.port.fixed_ips if f.subnet_id == subnet.id), None)


def _link(port_view: PortView) -> dict[str, object]:
    port = port_view.port
    has_dhcp = any(subnet.enable_dhcp for subnet in port_view.subnets)
    return {
        "id": link_name(port.id),
        "vif_id": port.id,
        "type": "bridge",
        "mtu": None if has_dhcp else port_view.network.mtu,
        "ethernet_mac_address": port.mac_address,
    }


def _network(
    port_view: PortView, subnet: Subnet, address: str, number: int, link_id: str
) -> dict[str, object]:
    version = subnet.ip_version
    network_id = port_view.network.id
    if subnet.ipv6_address_mode is not None:
        kind = f"ipv6_{subnet.ipv6_address_mode.value}"
    elif subnet.enable_dhcp:
        # DHCP networks say only that: the guest asks DHCP for the rest.
        return {
            "id": f"network{number}",
            "type": f"ipv{version}_dhcp",
            "link": link_id,
            "network_id": network_id,
        }
    else:
        kind = f"ipv{version}"
    cidr = ipaddress.ip_network(subnet.cidr, strict=False)
    return {
        "id": f"network{number}",
        "type": kind,
        "link": link_id,
        "ip_address": address,
        "netmask": str(cidr.netmask),
        "routes": _routes(subnet),
        "network_id": network_id,
        "services": _dns_services(subnet),
    }


def _routes(subnet: Subnet) -> list[dict[str, str]]:
    routes = []
    if subnet.gateway_ip:
        network, netmask = _DEFAULT_ROUTE[subnet.ip_version]
        routes.append({"network": network, "netmask": netmask, "gateway": subnet.gateway_ip})
    for host_route in subnet.host_routes:
        destination = ipaddress.ip_network(host_route.destination, strict=False)
        routes.append(
            {
                "network": str(destination.network_address),
                "netmask": str(destination.netmask),
                "gateway": host_route.nexthop,
            }
        )
    return routes


def _dns_services(subnet: Subnet) -> list[dict[str, str]]:
    return [{"type": "dns", "address": address} for address in subnet.dns_nameservers]
