"""The inventory document: what ``cloudseed import`` reads and ``export`` writes.

A document declares key pairs, networks with their subnets, routers with the
subnets they attach, free-standing ports, and servers with their ports. Every
entity may carry its id; without one it is matched by name (and a server's
ports by MAC, by fixed IP, then by position on their network), so the same
file applied twice changes nothing the second time. ``export_document``
writes every id, MAC and address, so its output re-imports to the same state.

Importing never deletes: entities absent from the document are left alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from cloudseed.control import views
from cloudseed.control.schemas import (
    MAX_PORTS_PER_SERVER,
    Body,
    KeypairCreate,
    NetworkCreate,
    PortCreate,
    RouterCreate,
    ServerCreate,
    SubnetCreate,
)
from cloudseed.model import Subnet
from cloudseed.store.protocol import Reader
from cloudseed.store.rules import MAX_EC2_ID

DOCUMENT_VERSION = 1


class PortDoc(PortCreate):
    # A port another server owns (or that is listed free here while a server
    # owns it) changes owner only with move: true.
    move: bool = False


class ServerDoc(ServerCreate):
    # Kept across export and import so EC2 instance ids (i-%08x) stay stable.
    ec2_id: Annotated[int, Field(ge=1, le=MAX_EC2_ID)] | None = None
    created_at: Annotated[str, StringConstraints(max_length=40)] | None = None
    ports: Annotated[list[PortDoc], Field(max_length=MAX_PORTS_PER_SERVER)] = Field(
        default_factory=list
    )


class Document(Body):
    version: Literal[1] = 1
    keypairs: list[KeypairCreate] = Field(default_factory=list)
    networks: list[NetworkCreate] = Field(default_factory=list)
    routers: list[RouterCreate] = Field(default_factory=list)
    ports: list[PortDoc] = Field(default_factory=list)  # ports that no server owns
    servers: list[ServerDoc] = Field(default_factory=list)


def export_document(reader: Reader) -> dict[str, Any]:
    """The whole inventory as a JSON-ready document (ids included)."""
    networks = {n.id: n for n in reader.list_networks()}
    subnets_of: dict[str, list[Subnet]] = {}
    for subnet in reader.list_subnets():
        subnets_of.setdefault(subnet.network_id, []).append(subnet)
    ports = list(reader.list_ports())
    by_server = views.ports_by_server(ports)

    def port_doc(port: Any) -> dict[str, Any]:
        return {
            "id": port.id,
            "name": port.name,
            "network": networks[port.network_id].name,
            "mac_address": port.mac_address,
            "fixed_ips": [
                {"subnet": f.subnet_id, "ip_address": f.ip_address} for f in port.fixed_ips
            ],
            "floating_ip": port.floating_ip,
            "tag": port.tag,
        }

    servers = []
    for server in reader.list_servers():
        view = views.server_view(server, [])
        view.pop("ports")
        view["ports"] = [port_doc(p) for p in by_server.get(server.id, [])]
        servers.append(view)
    return {
        "version": DOCUMENT_VERSION,
        "keypairs": [
            {"name": k.name, "type": str(k.type), "public_key": k.public_key}
            for k in reader.list_keypairs()
        ],
        "networks": [
            {
                "id": n.id,
                "name": n.name,
                "mtu": n.mtu,
                "subnets": [_subnet_doc(s) for s in subnets_of.get(n.id, [])],
            }
            for n in networks.values()
        ],
        "routers": [
            {"id": r.id, "name": r.name, "subnets": list(r.subnet_ids)}
            for r in reader.list_routers()
        ],
        "ports": [port_doc(p) for p in ports if p.server_id is None],
        "servers": servers,
    }


def _subnet_doc(subnet: Subnet) -> dict[str, Any]:
    view = views.subnet_view(subnet)
    view.pop("network_id")
    view.pop("ip_version")
    return view


__all__ = ["Document", "PortDoc", "ServerDoc", "SubnetCreate", "export_document"]
