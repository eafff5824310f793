"""Subnets, fixed IPs and MAC addresses: allocation, as Neutron does it.

Pure functions over model values: they pick the next free address and
generate MACs. The rules an address or MAC must obey live in
``cloudseed.store.rules`` (re-exported here for the control layer), which
the store's writer applies again inside every write transaction. The caller
supplies the addresses already taken (from the store, inside the write
transaction), so allocation and the uniqueness check see the same state.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Collection, Iterator

from cloudseed.errors import Conflict, Invalid
from cloudseed.model import Ipv6Mode, Subnet
from cloudseed.store.rules import (
    IpAddress,
    IpNetwork,
    normalise_mac,
    parse_address,
    parse_network,
    reserved_addresses,
    subnet_network,
)
from cloudseed.store.rules import check_fixed_ip as _check_reserved

# Neutron's default base_mac: the OpenStack OUI, random lower three octets.
MAC_PREFIX = "fa:16:3e"
# Modes where the guest forms its own address from the prefix and its MAC
# (EUI-64), so Neutron computes the same address instead of allocating one.
EUI64_MODES = (Ipv6Mode.SLAAC, Ipv6Mode.DHCPV6_STATELESS)


def _is_network_or_broadcast(subnet_net: IpNetwork, address: IpAddress) -> bool:
    if subnet_net.version == 4:
        return address in (subnet_net.network_address, subnet_net.broadcast_address)
    return address == subnet_net.network_address


def check_gateway(subnet_net: IpNetwork, gateway: str, field: str) -> str:
    address = parse_address(gateway, field)
    if address not in subnet_net or _is_network_or_broadcast(subnet_net, address):
        raise Invalid(field, f"gateway {gateway} is not a host address of {subnet_net}")
    return str(address)


def first_host(subnet_net: IpNetwork) -> str | None:
    return next((str(a) for a in _hosts(subnet_net)), None)


def check_fixed_ip(
    subnet: Subnet, ip: str, taken: Collection[str], field: str, *, dhcp_port: bool = False
) -> str:
    """The address, canonical, if it may be given to a port on ``subnet``."""
    text = _check_reserved(subnet, ip, field, dhcp_port=dhcp_port)
    if text in taken:
        raise Conflict(field, f"{ip} is already in use on network {subnet.network_id}")
    return text


def allocate_ip(
    subnet: Subnet,
    taken: Collection[str],
    mac: str,
    field: str,
    cursors: dict[str, int] | None = None,
) -> str:
    """The address a new port on ``subnet`` gets: EUI-64, or the lowest free one.

    ``cursors`` (subnet id → first address worth trying) lets a caller that
    only ever adds to ``taken`` allocate thousands of addresses in linear time.
    """
    subnet_net = subnet_network(subnet.cidr)
    if subnet.ip_version == 6 and subnet.ipv6_address_mode in EUI64_MODES:
        return check_fixed_ip(subnet, eui64_address(subnet_net, mac), taken, field)
    reserved = reserved_addresses(subnet)
    start = cursors.get(subnet.id) if cursors is not None else None
    for address in _hosts(subnet_net, start):
        text = str(address)
        if text not in reserved and text not in taken:
            if cursors is not None:
                cursors[subnet.id] = int(address) + 1
            return text
    raise Conflict(field, f"no free address left in subnet {subnet.cidr}")


def _hosts(subnet_net: IpNetwork, start_at: int | None = None) -> Iterator[IpAddress]:
    # Lazy: an IPv6 /64 has 2**64 hosts.
    start = int(subnet_net.network_address) + 1
    end = int(subnet_net.broadcast_address) - (1 if subnet_net.version == 4 else 0)
    if start_at is not None:
        start = max(start, start_at)
    make: type[IpAddress] = (
        ipaddress.IPv4Address if subnet_net.version == 4 else ipaddress.IPv6Address
    )
    for value in range(start, end + 1):
        yield make(value)


def eui64_address(subnet_net: IpNetwork, mac: str) -> str:
    """RFC 4291 appendix A: the interface id from a MAC, under a /64 prefix."""
    octets = bytearray(int(part, 16) for part in mac.split(":"))
    octets[0] ^= 0x02
    interface_id = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    value = int(subnet_net.network_address) | int.from_bytes(interface_id, "big")
    return str(ipaddress.IPv6Address(value))


def generate_mac(taken: Collection[str]) -> str:
    """A random ``fa:16:3e:xx:xx:xx`` not in ``taken``."""
    while True:
        tail = secrets.token_bytes(3)
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in tail)
        if mac not in taken:
            return mac


__all__ = [
    "EUI64_MODES",
    "MAC_PREFIX",
    "allocate_ip",
    "check_fixed_ip",
    "check_gateway",
    "eui64_address",
    "first_host",
    "generate_mac",
    "normalise_mac",
    "parse_address",
    "parse_network",
    "subnet_network",
]
