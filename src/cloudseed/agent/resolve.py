"""From (router or network, guest address) to the server behind it.

Neutron's rules (anchors §2.4): a router id means "the networks of the
subnets attached to that router"; a network id means that network. The
guest's address is looked up among the ports on those networks. An
IPv4-mapped IPv6 address is the IPv4 address; an IPv6 link-local source is
matched by a registered address first, then by the MAC its EUI-64 interface
id encodes. Exactly one port, bound to a server, identifies the guest;
anything else is a 404 that names the address and the networks searched.

Because the search is scoped to the router's or network's own networks, two
tenants that both use 10.0.0.5 behind different routers never meet.

``lookup`` does the store reads and nothing else; the agent runs it in a
worker thread and caches what it returns (``agent.cache``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from cloudseed.errors import Invalid, NotFound
from cloudseed.store.protocol import Reader


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """A lookup's answer plus the facts the cache indexes it by."""

    identity: Identity | None
    error: NotFound | None
    network_ids: tuple[str, ...]  # the networks searched
    mac: str | None  # the EUI-64 MAC searched, for link-local sources


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


def lookup(
    reader: Reader, scope: Scope, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> Outcome:
    ip = str(address)
    if scope.kind is ScopeKind.ROUTER:
        try:
            network_ids = tuple(reader.router_network_ids(scope.id))
        except NotFound:
            network_ids = ()
        where = f"the networks of router {scope.id}"
    else:
        network_ids = (scope.id,)
        where = f"network {scope.id}"
    if not network_ids:
        return Outcome(None, NotFound("router", scope.id, f"router {scope.id} has no networks"),
                       (), None)
    ports = list(reader.ports_with_ip(network_ids, ip))
    mac = eui64_mac(address)
    if not ports and mac is not None:
        ports = list(reader.ports_with_mac(network_ids, mac))
    if len(ports) != 1:
        reason = "no port" if not ports else f"{len(ports)} ports"
        message = f"{reason} with IP {ip} on {where}"
        return Outcome(None, NotFound("port", ip, message), network_ids, mac)
    port = ports[0]
    if port.server_id is None:
        message = f"port {port.id} with IP {ip} on {where} is not attached to a server"
        return Outcome(None, NotFound("server", ip, message), network_ids, mac)
    try:
        server = reader.get_server(port.server_id)
    except NotFound:
        message = f"server {port.server_id} of port {port.id} (IP {ip}) does not exist"
        return Outcome(None, NotFound("server", port.server_id, message), network_ids, mac)
    identity = Identity(server.id, server.project_id, port.id)
    return Outcome(identity, None, network_ids, mac)
