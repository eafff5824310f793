"""Subnets, fixed IPs and MAC addresses: the rules Neutron applies.

Pure functions over model values: they check an address against its subnet,
pick the next free address, and generate or normalise MACs. The caller
supplies the addresses already taken (from the store, inside the write
transaction), so allocation and the uniqueness check see the same state.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Collection, Iterator

from cloudseed.errors import Conflict, Invalid
from cloudseed.model import Ipv6Mode, Subnet

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Neutron's default base_mac: the OpenStack OUI, random lower three octets.
MAC_PREFIX = "fa:16:3e"
_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
# Modes where the guest forms its own address from the prefix and its MAC
# (EUI-64), so Neutron computes the same address instead of allocating one.
EUI64_MODES = (Ipv6Mode.SLAAC, Ipv6Mode.DHCPV6_STATELESS)


def parse_network(cidr: str, field: str) -> IpNetwork:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise Invalid(field, f"{cidr!r} is not a CIDR such as 10.0.0.0/24") from None
    if str(network) != cidr:
        raise Invalid(field, f"{cidr!r} has host bits set; did you mean {network}?")
    return network


def parse_address(text: str, field: str) -> IpAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(field, f"{text!r} is not an IP address") from None


def is_reserved(subnet_net: IpNetwork, address: IpAddress) -> bool:
    """Network and broadcast addresses are never handed out (IPv4 only, above /31)."""
    if subnet_net.version == 4 and subnet_net.prefixlen < 31:
        return address in (subnet_net.network_address, subnet_net.broadcast_address)
    return subnet_net.version == 6 and address == subnet_net.network_address


def check_gateway(subnet_net: IpNetwork, gateway: str, field: str) -> str:
    address = parse_address(gateway, field)
    if address not in subnet_net or is_reserved(subnet_net, address):
        raise Invalid(field, f"gateway {gateway} is not a host address of {subnet_net}")
    return str(address)


def first_host(subnet_net: IpNetwork) -> str | None:
    return next((str(a) for a in _hosts(subnet_net)), None)


def check_fixed_ip(subnet: Subnet, ip: str, taken: Collection[str], field: str) -> str:
    """The address, normalised, if it may be given to a port on ``subnet``."""
    subnet_net = ipaddress.ip_network(subnet.cidr)
    address = parse_address(ip, field)
    if address not in subnet_net:
        raise Invalid(field, f"{ip} is not inside subnet {subnet.cidr}")
    if is_reserved(subnet_net, address):
        raise Invalid(field, f"{ip} is the network or broadcast address of {subnet.cidr}")
    text = str(address)
    if subnet.gateway_ip is not None and text == subnet.gateway_ip:
        raise Conflict(field, f"{ip} is the gateway of subnet {subnet.cidr}")
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
    subnet_net = ipaddress.ip_network(subnet.cidr)
    if subnet.ip_version == 6 and subnet.ipv6_address_mode in EUI64_MODES:
        return check_fixed_ip(subnet, eui64_address(subnet_net, mac), taken, field)
    start = cursors.get(subnet.id) if cursors is not None else None
    for address in _hosts(subnet_net, start):
        text = str(address)
        if text != subnet.gateway_ip and text not in taken:
            if cursors is not None:
                cursors[subnet.id] = int(address) + 1
            return text
    raise Conflict(field, f"no free address left in subnet {subnet.cidr}")


def _hosts(subnet_net: IpNetwork, start_at: int | None = None) -> Iterator[IpAddress]:
    # Lazy: an IPv6 /64 has 2**64 hosts.
    start = int(subnet_net.network_address)
    end = int(subnet_net.broadcast_address)
    if not (subnet_net.version == 4 and subnet_net.prefixlen >= 31):
        start += 1
        if subnet_net.version == 4:
            end -= 1
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


def normalise_mac(mac: str, field: str) -> str:
    text = mac.strip().lower()
    if not _MAC.match(text):
        raise Invalid(field, f"{mac!r} is not a MAC address such as fa:16:3e:12:34:56")
    text = text.replace("-", ":")
    if int(text[:2], 16) & 0x01:
        raise Invalid(field, f"{mac} is a multicast address")
    if text == "00:00:00:00:00:00":
        raise Invalid(field, "the all-zero MAC address is not usable")
    return text


def generate_mac(taken: Collection[str]) -> str:
    """A random ``fa:16:3e:xx:xx:xx`` not in ``taken``."""
    while True:
        tail = secrets.token_bytes(3)
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in tail)
        if mac not in taken:
            return mac
