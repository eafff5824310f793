"""Building a port: its MAC and fixed IPs, checked against what is taken.

Shared by the control service and bulk import. The caller passes the sets of
addresses already in use (read inside its write transaction, or tracked in
memory across a whole document) and adds the new port's addresses to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cloudseed.control import addressing
from cloudseed.errors import Conflict, Invalid
from cloudseed.model import FixedIp, Network, Port, Subnet
from cloudseed.store import rules


@dataclass
class Taken:
    """Addresses in use: MACs (global, a MAC is unique) and IPs per network."""

    macs: set[str] = field(default_factory=set)
    ips: dict[str, set[str]] = field(default_factory=dict)
    # Subnet id → the lowest address that may still be free (see allocate_ip).
    cursors: dict[str, int] = field(default_factory=dict)

    def add(self, port: Port) -> None:
        self.macs.add(port.mac_address)
        network_ips = self.ips.setdefault(port.network_id, set())
        network_ips.update(f.ip_address for f in port.fixed_ips)

    def remove(self, port: Port) -> None:
        self.macs.discard(port.mac_address)
        network_ips = self.ips.get(port.network_id, set())
        network_ips.difference_update(f.ip_address for f in port.fixed_ips)
        for fixed in port.fixed_ips:  # the freed address may lie below a cursor
            self.cursors.pop(fixed.subnet_id, None)

    @classmethod
    def of(cls, ports: Sequence[Port]) -> Taken:
        taken = cls()
        for port in ports:
            taken.add(port)
        return taken


@dataclass(frozen=True)
class IpRequest:
    subnet: str | None = None  # subnet id or name
    ip_address: str | None = None


def build_port(
    port_id: str,
    network: Network,
    subnets: Sequence[Subnet],
    taken: Taken,
    *,
    where: str,
    mac: str | None = None,
    ips: Sequence[IpRequest] | None = None,
    name: str = "",
    server_id: str | None = None,
    floating_ip: str | None = None,
    tag: str | None = None,
) -> Port:
    """A new port on ``network``; records its addresses in ``taken``."""
    if mac is not None:
        mac = addressing.normalise_mac(mac, f"{where}.mac_address")
        if mac in taken.macs:
            raise Conflict(f"{where}.mac_address", f"{mac} is already used by another port")
    else:
        mac = addressing.generate_mac(taken.macs)
    dhcp_port = rules.is_dhcp_port_name(name, server_id)
    in_use = taken.ips.setdefault(network.id, set())
    fixed: list[FixedIp] = []
    if ips is None:
        # Neutron's default: one address from the first subnet of each family.
        for version in (4, 6):
            subnet = next((s for s in subnets if s.ip_version == version), None)
            if subnet is not None:
                ip = addressing.allocate_ip(
                    subnet, in_use, mac, f"{where}.fixed_ips", taken.cursors
                )
                fixed.append(FixedIp(subnet.id, ip))
                in_use.add(ip)
    else:
        for i, request in enumerate(ips):
            at = f"{where}.fixed_ips[{i}]"
            subnet = _subnet_for(request, network, subnets, at)
            if request.ip_address is None:
                ip = addressing.allocate_ip(subnet, in_use, mac, at, taken.cursors)
            else:
                ip = addressing.check_fixed_ip(
                    subnet, request.ip_address, in_use, f"{at}.ip_address", dhcp_port=dhcp_port
                )
            fixed.append(FixedIp(subnet.id, ip))
            in_use.add(ip)
    if floating_ip is not None:
        floating_ip = str(rules.check_unicast(floating_ip, f"{where}.floating_ip"))
    taken.macs.add(mac)
    return Port(
        id=port_id,
        network_id=network.id,
        mac_address=mac,
        fixed_ips=tuple(fixed),
        floating_ip=floating_ip,
        server_id=server_id,
        name=name,
        tag=tag,
    )


def _subnet_for(request: IpRequest, network: Network, subnets: Sequence[Subnet], at: str) -> Subnet:
    if request.subnet is not None:
        matches = [s for s in subnets if request.subnet in (s.id, s.name)]
        if len(matches) != 1:
            raise Invalid(
                f"{at}.subnet",
                f"network {network.name} has "
                + ("no subnet" if not matches else "several subnets")
                + f" called {request.subnet!r}",
            )
        return matches[0]
    if request.ip_address is None:
        raise Invalid(at, "give a subnet, an ip_address, or both")
    address = addressing.parse_address(request.ip_address, f"{at}.ip_address")
    for subnet in subnets:
        if address in addressing.subnet_network(subnet.cidr):
            return subnet
    raise Invalid(
        f"{at}.ip_address",
        f"{request.ip_address} is in no subnet of network {network.name} "
        f"({', '.join(s.cidr for s in subnets) or 'it has none'})",
    )
