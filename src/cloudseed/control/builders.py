"""Validated request bodies → model values: the rules that need no stored state.

Pure functions, shared by the control service (one resource per request) and
bulk import (thousands per document), so both apply exactly the same rules.
``where`` prefixes every field path so an error in a large document names
its place (``servers[17].files[2].path``).
"""

from __future__ import annotations

import base64
import ipaddress
import uuid
from types import MappingProxyType

from cloudseed.control import addressing
from cloudseed.control.keys import parse_public_key
from cloudseed.control.naming import check_hostname, hostname_from_name
from cloudseed.control.schemas import (
    ImdsBody,
    KeypairCreate,
    NetworkCreate,
    ServerCreate,
    SubnetCreate,
)
from cloudseed.errors import Conflict, Invalid
from cloudseed.model import (
    HostRoute,
    ImdsOptions,
    InjectedFile,
    KeyPair,
    Network,
    Server,
    Subnet,
)
from cloudseed.store import rules


def imds_options(body: ImdsBody) -> ImdsOptions:
    return ImdsOptions(tokens=body.tokens, endpoint=body.endpoint,
                       hop_limit=body.hop_limit, tags=body.tags)


def new_id() -> str:
    return str(uuid.uuid4())


def join(where: str, field: str) -> str:
    return f"{where}.{field}" if where else field


def build_network(body: NetworkCreate, network_id: str | None = None) -> Network:
    return Network(id=network_id or body.id or new_id(), name=body.name, mtu=body.mtu)


def build_subnet(
    body: SubnetCreate, network_id: str, where: str = "", subnet_id: str | None = None
) -> Subnet:
    net = rules.check_subnet_range(body.cidr, join(where, "cidr"))
    if body.gateway_ip == "auto":
        gateway = addressing.first_host(net)
    elif body.gateway_ip is None or body.gateway_ip.lower() == "none":
        gateway = None
    else:
        gateway = addressing.check_gateway(net, body.gateway_ip, join(where, "gateway_ip"))
    if body.ipv6_address_mode is not None and net.version != 6:
        raise Invalid(join(where, "ipv6_address_mode"), "applies to IPv6 subnets only")
    if body.ipv6_address_mode in addressing.EUI64_MODES and net.prefixlen != 64:
        raise Invalid(
            join(where, "cidr"),
            f"{body.ipv6_address_mode} needs a /64 prefix (EUI-64 addresses), not /{net.prefixlen}",
        )
    dns = tuple(
        str(rules.check_unicast(ip, f"{join(where, 'dns_nameservers')}[{i}]"))
        for i, ip in enumerate(body.dns_nameservers)
    )
    if len(set(dns)) != len(dns):
        raise Invalid(join(where, "dns_nameservers"), "lists the same server twice")
    routes = []
    for i, route in enumerate(body.host_routes):
        at = f"{join(where, 'host_routes')}[{i}]"
        destination = addressing.parse_network(route.destination, f"{at}.destination")
        nexthop = rules.check_unicast(route.nexthop, f"{at}.nexthop")
        if destination.version != nexthop.version or nexthop not in net:
            raise Invalid(f"{at}.nexthop", f"{route.nexthop} is not an address of {body.cidr}")
        routes.append(HostRoute(str(destination), str(nexthop)))
    return Subnet(
        id=subnet_id or body.id or new_id(),
        network_id=network_id,
        cidr=str(net),
        ip_version=net.version,
        gateway_ip=gateway,
        dns_nameservers=dns,
        host_routes=tuple(routes),
        enable_dhcp=body.enable_dhcp,
        ipv6_address_mode=body.ipv6_address_mode,
        name=body.name,
    )


def check_no_overlap(subnets: list[Subnet], where: str, scope: str) -> None:
    """Subnets of one network (or one router) must not overlap."""
    nets = [(s, ipaddress.ip_network(s.cidr)) for s in subnets]
    for i, (a, net_a) in enumerate(nets):
        for b, net_b in nets[i + 1 :]:
            if net_a.version == net_b.version and net_a.overlaps(net_b):
                raise Conflict(where, f"{a.cidr} overlaps {b.cidr} ({b.id}) on {scope}")


def build_keypair(body: KeypairCreate, where: str = "") -> KeyPair:
    public_key, fingerprint = parse_public_key(
        body.type, body.public_key, join(where, "public_key")
    )
    return KeyPair(name=body.name, type=body.type, public_key=public_key, fingerprint=fingerprint)


def build_server(body: ServerCreate, server_id: str, created_at: str, where: str = "") -> Server:
    """The server record; ports and the key pair's existence are the caller's part."""
    hostname = (
        check_hostname(body.hostname, join(where, "hostname"))
        if body.hostname
        else hostname_from_name(body.name, server_id)
    )
    seen: set[str] = set()
    files = []
    for i, item in enumerate(body.files):
        if item.path in seen:
            raise Invalid(f"{join(where, 'files')}[{i}].path", f"{item.path} is given twice")
        seen.add(item.path)
        files.append(InjectedFile(item.path, base64.b64decode(item.contents)))
    return Server(
        id=server_id,
        name=body.name,
        hostname=hostname,
        project_id=body.project_id,
        user_id=body.user_id,
        availability_zone=body.availability_zone,
        flavor_name=body.flavor_name,
        root_gb=body.root_gb,
        ephemeral_gb=body.ephemeral_gb,
        swap_mb=body.swap_mb,
        image_id=body.image_id,
        launch_index=body.launch_index,
        reservation_id=body.reservation_id or f"r-{server_id[:8]}",
        key_name=body.key_name,
        metadata=MappingProxyType(dict(body.metadata)),
        user_data=None if body.user_data is None else base64.b64decode(body.user_data),
        files=tuple(files),
        config_drive=body.config_drive,
        imds=imds_options(body.imds),
        created_at=created_at,
    )
