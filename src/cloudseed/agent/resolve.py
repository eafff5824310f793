"""What the agent resolves: the scope the proxy named and the guest's address.

``parse_source`` reads the guest address from ``X-Forwarded-For`` (an
IPv4-mapped IPv6 address is the IPv4 address; a zone is dropped);
``eui64_mac`` gives the MAC a link-local EUI-64 address was built from.
Resolution itself -- (router or network, address) → port → server, with
Neutron's rules -- is ``agent.addressmap``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from cloudseed.errors import Invalid


class ScopeKind(StrEnum):
    ROUTER = "router"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str


@dataclass(frozen=True, slots=True)
class Identity:
    server_id: str
    project_id: str
    port_id: str


def parse_source(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The guest address from X-Forwarded-For: one address, zone and v4-mapping removed."""
    text = value.strip()
    if "," in text:
        raise Invalid("X-Forwarded-For", "must hold exactly one address")
    text = text.partition("%")[0]  # fe80::1%eth0: the zone is the proxy's, not the guest's
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid("X-Forwarded-For", f"{value!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def eui64_mac(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The MAC an EUI-64 link-local address was built from, or None."""
    if not isinstance(address, ipaddress.IPv6Address) or not address.is_link_local:
        return None
    iid = address.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None  # privacy or manually assigned: no MAC inside
    mac = bytes([iid[0] ^ 0x02, iid[1], iid[2], iid[5], iid[6], iid[7]])
    return ":".join(f"{b:02x}" for b in mac)
