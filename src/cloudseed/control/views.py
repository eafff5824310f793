"""Model values → the JSON the control API returns (shapes in schemas.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from cloudseed.model import KeyPair, Network, PhoneHome, Port, Router, Server, Subnet


def subnet_view(subnet: Subnet) -> dict[str, Any]:
    return {
        "id": subnet.id,
        "name": subnet.name,
        "network_id": subnet.network_id,
        "cidr": subnet.cidr,
        "ip_version": subnet.ip_version,
        "gateway_ip": subnet.gateway_ip,
        "dns_nameservers": list(subnet.dns_nameservers),
        "host_routes": [
            {"destination": r.destination, "nexthop": r.nexthop} for r in subnet.host_routes
        ],
        "enable_dhcp": subnet.enable_dhcp,
        "ipv6_address_mode": str(subnet.ipv6_address_mode) if subnet.ipv6_address_mode else None,
    }


def network_view(network: Network, subnets: Iterable[Subnet]) -> dict[str, Any]:
    return {
        "id": network.id,
        "name": network.name,
        "mtu": network.mtu,
        "subnets": [subnet_view(s) for s in subnets],
    }


def router_view(router: Router) -> dict[str, Any]:
    return {"id": router.id, "name": router.name, "subnet_ids": list(router.subnet_ids)}


def port_view(port: Port) -> dict[str, Any]:
    return {
        "id": port.id,
        "name": port.name,
        "network_id": port.network_id,
        "mac_address": port.mac_address,
        "fixed_ips": [
            {"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in port.fixed_ips
        ],
        "floating_ip": port.floating_ip,
        "server_id": port.server_id,
        "tag": port.tag,
    }


def keypair_view(keypair: KeyPair) -> dict[str, Any]:
    return {
        "name": keypair.name,
        "type": str(keypair.type),
        "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint,
    }


def server_view(server: Server, ports: Iterable[Port]) -> dict[str, Any]:
    return {
        "id": server.id,
        "name": server.name,
        "hostname": server.hostname,
        "project_id": server.project_id,
        "user_id": server.user_id,
        "ec2_id": server.ec2_id,
        "availability_zone": server.availability_zone,
        "flavor_name": server.flavor_name,
        "root_gb": server.root_gb,
        "ephemeral_gb": server.ephemeral_gb,
        "swap_mb": server.swap_mb,
        "image_id": server.image_id,
        "launch_index": server.launch_index,
        "reservation_id": server.reservation_id,
        "key_name": server.key_name,
        "metadata": dict(server.metadata),
        "user_data": encode_b64(server.user_data),
        "files": [{"path": f.path, "contents": encode_b64(f.content)} for f in server.files],
        "config_drive": server.config_drive,
        "imds": {"tokens": str(server.imds.tokens), "endpoint": str(server.imds.endpoint),
                 "hop_limit": server.imds.hop_limit, "tags": server.imds.tags},
        "created_at": server.created_at,
        "ports": [port_view(p) for p in ports],
    }


def encode_b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def ports_by_server(ports: Iterable[Port]) -> Mapping[str, list[Port]]:
    grouped: dict[str, list[Port]] = {}
    for port in ports:
        if port.server_id is not None:
            grouped.setdefault(port.server_id, []).append(port)
    return grouped


def phone_home_view(report: PhoneHome | None) -> dict[str, Any]:
    if report is None:
        return {"booted": False, "booted_at": None, "hostname": "", "fqdn": "", "host_keys": []}
    return {
        "booted": True,
        "booted_at": report.booted_at,
        "hostname": report.hostname,
        "fqdn": report.fqdn,
        "host_keys": list(report.host_keys()),
    }


def known_hosts_lines(server: Server, ports: Iterable[Port], report: PhoneHome) -> list[str]:
    """``name,host name,addr… keytype key``: the names the operator dials, never the guest's.

    The host names come from the inventory, not the report: a guest must not
    be able to claim another host's name in the operator's known_hosts.
    """
    names = dict.fromkeys(
        [server.name, server.hostname, *(f.ip_address for p in ports for f in p.fixed_ips)]
    )
    hosts = ",".join(n for n in names if n and " " not in n and "," not in n)
    return [f"{hosts} {key}" for key in report.host_keys()]
