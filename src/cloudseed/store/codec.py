"""Conversion between model values and table rows.

Lists and mappings are stored as JSON text (the same on both backends);
injected file contents are base64 inside that JSON; user-data stays raw bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row

from cloudseed.model import (
    EndpointState,
    FixedIp,
    HostRoute,
    ImdsOptions,
    InjectedFile,
    Ipv6Mode,
    KeyPair,
    KeyType,
    Network,
    Port,
    Server,
    Subnet,
    TokenPolicy,
)

Values = dict[str, Any]


def network_values(network: Network) -> Values:
    return {"id": network.id, "name": network.name, "mtu": network.mtu}


def network_from_row(row: Row[Any]) -> Network:
    return Network(id=row.id, name=row.name, mtu=row.mtu)


def subnet_values(subnet: Subnet) -> Values:
    return {
        "id": subnet.id,
        "network_id": subnet.network_id,
        "name": subnet.name,
        "cidr": subnet.cidr,
        "ip_version": subnet.ip_version,
        "gateway_ip": subnet.gateway_ip,
        "dns_nameservers": json.dumps(list(subnet.dns_nameservers)),
        "host_routes": json.dumps(
            [{"destination": r.destination, "nexthop": r.nexthop} for r in subnet.host_routes]
        ),
        "enable_dhcp": subnet.enable_dhcp,
        "ipv6_address_mode": subnet.ipv6_address_mode.value if subnet.ipv6_address_mode else None,
    }


def subnet_from_row(row: Row[Any]) -> Subnet:
    return Subnet(
        id=row.id,
        network_id=row.network_id,
        name=row.name,
        cidr=row.cidr,
        ip_version=row.ip_version,
        gateway_ip=row.gateway_ip,
        dns_nameservers=tuple(json.loads(row.dns_nameservers)),
        host_routes=tuple(HostRoute(**route) for route in json.loads(row.host_routes)),
        enable_dhcp=bool(row.enable_dhcp),
        ipv6_address_mode=Ipv6Mode(row.ipv6_address_mode) if row.ipv6_address_mode else None,
    )


def keypair_values(keypair: KeyPair) -> Values:
    return {
        "name": keypair.name,
        "type": keypair.type.value,
        "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint,
    }


def keypair_from_row(row: Row[Any]) -> KeyPair:
    return KeyPair(
        name=row.name,
        type=KeyType(row.type),
        public_key=row.public_key,
        fingerprint=row.fingerprint,
    )


def port_values(port: Port) -> Values:
    return {
        "id": port.id,
        "network_id": port.network_id,
        "name": port.name,
        "mac_address": port.mac_address.lower(),
        "floating_ip": port.floating_ip,
        "server_id": port.server_id,
        "tag": port.tag,
    }


def fixed_ip_values(port: Port) -> list[Values]:
    return [
        {
            "port_id": port.id,
            "position": position,
            "network_id": port.network_id,
            "subnet_id": fixed.subnet_id,
            "ip_address": fixed.ip_address,
        }
        for position, fixed in enumerate(port.fixed_ips)
    ]


def ports_from_rows(rows: Iterable[Row[Any]]) -> list[Port]:
    """Ports from a port LEFT JOIN fixed-ip result ordered by port, then position.

    Rows carry the port columns plus ``fixed_subnet_id`` / ``fixed_ip_address``
    (NULL for a port without fixed IPs).
    """
    ports: list[Port] = []
    current: Row[Any] | None = None
    fixed: list[FixedIp] = []
    for row in rows:
        if current is None or row.id != current.id:
            if current is not None:
                ports.append(_port(current, fixed))
            current, fixed = row, []
        if row.fixed_ip_address is not None:
            fixed.append(FixedIp(subnet_id=row.fixed_subnet_id, ip_address=row.fixed_ip_address))
    if current is not None:
        ports.append(_port(current, fixed))
    return ports


def _port(row: Row[Any], fixed: Sequence[FixedIp]) -> Port:
    return Port(
        id=row.id,
        network_id=row.network_id,
        mac_address=row.mac_address,
        fixed_ips=tuple(fixed),
        floating_ip=row.floating_ip,
        server_id=row.server_id,
        name=row.name,
        tag=row.tag,
    )


def server_values(server: Server) -> Values:
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
        # In the order given, as Nova keeps it: meta_data.json shows that order.
        "metadata": json.dumps(dict(server.metadata)),
        "user_data": server.user_data,
        "files": json.dumps(
            [
                {"path": f.path, "content": base64.b64encode(f.content).decode("ascii")}
                for f in server.files
            ]
        ),
        "config_drive": server.config_drive,
        "imds_tokens": server.imds.tokens.value,
        "imds_endpoint": server.imds.endpoint.value,
        "imds_hop_limit": server.imds.hop_limit,
        "imds_tags": server.imds.tags,
        "created_at": server.created_at,
    }


def server_from_row(row: Row[Any]) -> Server:
    return Server(
        id=row.id,
        name=row.name,
        hostname=row.hostname,
        project_id=row.project_id,
        user_id=row.user_id,
        ec2_id=row.ec2_id,
        availability_zone=row.availability_zone,
        flavor_name=row.flavor_name,
        root_gb=row.root_gb,
        ephemeral_gb=row.ephemeral_gb,
        swap_mb=row.swap_mb,
        image_id=row.image_id,
        launch_index=row.launch_index,
        reservation_id=row.reservation_id,
        key_name=row.key_name,
        metadata=MappingProxyType(json.loads(row.metadata)),
        user_data=bytes(row.user_data) if row.user_data is not None else None,
        files=tuple(
            InjectedFile(path=f["path"], content=base64.b64decode(f["content"]))
            for f in json.loads(row.files)
        ),
        config_drive=bool(row.config_drive),
        imds=ImdsOptions(
            tokens=TokenPolicy(row.imds_tokens), endpoint=EndpointState(row.imds_endpoint),
            hop_limit=row.imds_hop_limit, tags=bool(row.imds_tags),
        ),
        created_at=row.created_at,
    )
