"""What one write transaction knows about the database, kept for its duration.

A writer holds the writers' lock for its whole transaction, so nothing it
learns here can be changed by anyone else before it commits: a network or
server seen to exist stays existing (unless the writer itself deletes it and
says so), the largest ec2_id stays the largest. The writer tells ``Known``
about each of its own changes, and asks it the questions its integrity
checks need; past ``MIRROR_AFTER_PUTS`` puts of servers or ports, the answers
come from in-memory mirrors (``bulk.py``) instead of one query each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable, bindparam, select

from cloudseed.errors import NotFound
from cloudseed.model import Port, Server, Subnet
from cloudseed.store import queries
from cloudseed.store.bulk import LazyMirror, PortMirror, ServerMirror, StoredPort, StoredServer
from cloudseed.store.protocol import EntityKind
from cloudseed.store.schema import keypairs, networks, servers

Run = Callable[[Executable, Any], CursorResult[Any]]

_PRIMARY_KEYS = {
    EntityKind.NETWORK: networks.c.id,
    EntityKind.SERVER: servers.c.id,
    EntityKind.KEYPAIR: keypairs.c.name,
}
_EXISTS = {
    kind: select(column).where(column == bindparam("key")) for kind, column in _PRIMARY_KEYS.items()
}


class Known:
    def __init__(self, run: Run, flushed: Callable[[], Connection]) -> None:
        self._run = run
        self._servers = LazyMirror(lambda: ServerMirror(flushed()))
        self._ports = LazyMirror(lambda: PortMirror(flushed()))
        self._present: dict[EntityKind, set[str]] = {kind: set() for kind in _PRIMARY_KEYS}
        # id → the subnet's place and addresses (network_id, cidr, gateway_ip).
        self._subnets: dict[str, Subnet] = {}
        self._routers_by_network: dict[str, list[str]] = {}
        self._next_ec2_id: int | None = None
        self._next_port_seq: int | None = None

    def require(self, kind: EntityKind, key: str) -> None:
        """Raise NotFound unless the network, server or key pair exists."""
        if key in self._present[kind]:
            return
        if self._run(_EXISTS[kind], {"key": key}).first() is None:
            raise NotFound(kind.value, key)
        self._present[kind].add(key)

    def added(self, kind: EntityKind, key: str) -> None:
        self._present[kind].add(key)

    def removed(self, kind: EntityKind, key: str) -> None:
        self._present[kind].discard(key)

    def subnet(self, subnet_id: str) -> Subnet:
        """The subnet's place and addresses (no DNS, routes or name); NotFound if absent."""
        if subnet_id not in self._subnets:
            row = self._run(queries.SUBNET_PLACE, {"id": subnet_id}).first()
            if row is None:
                raise NotFound("subnet", subnet_id)
            self._subnets[subnet_id] = Subnet(
                subnet_id, row.network_id, row.cidr, row.ip_version, row.gateway_ip,
                enable_dhcp=bool(row.enable_dhcp),
            )  # fmt: skip
        return self._subnets[subnet_id]

    def subnet_changed(self, subnet_id: str, subnet: Subnet | None) -> None:
        if subnet is None:
            self._subnets.pop(subnet_id, None)
        else:
            self._subnets[subnet_id] = subnet
        self._routers_by_network.clear()

    def routers_on(self, network_id: str) -> Sequence[str]:
        if network_id not in self._routers_by_network:
            found = self._run(queries.ROUTERS_ON_NETWORK, {"network_id": network_id})
            self._routers_by_network[network_id] = list(found.scalars())
        return self._routers_by_network[network_id]

    def routers_changed(self) -> None:
        self._routers_by_network.clear()

    def next_ec2_id(self) -> int:
        if self._next_ec2_id is None:
            self._next_ec2_id = (self._run(queries.MAX_EC2_ID, None).scalar() or 0) + 1
        return self._next_ec2_id

    def ec2_id_used(self, ec2_id: int) -> None:
        self._next_ec2_id = max(self.next_ec2_id(), ec2_id + 1)

    def next_port_seq(self) -> int:
        if self._next_port_seq is None:
            self._next_port_seq = (self._run(queries.MAX_PORT_SEQ, None).scalar() or 0) + 1
        seq = self._next_port_seq
        self._next_port_seq += 1
        return seq

    # -- servers and ports: answered by query, or by mirror in bulk ------------

    def server_and_name_holder(self, server: Server) -> tuple[Any, str | None]:
        """The stored server with this id (or None), and another server holding its name.

        A stored server has ``ec2_id`` and ``created_at`` attributes.
        """
        self._servers.on_put()
        mirror = self._servers.mirror
        return self._stored_and_holder(
            server.id, server.name, (mirror.by_id, mirror.id_by_name) if mirror else None,
            queries.SERVER_BY_ID_OR_NAME, {"id": server.id, "name": server.name})

    def server_stored(self, server: Server) -> None:
        self.added(EntityKind.SERVER, server.id)
        if self._servers.mirror is not None:
            stored = StoredServer(server.name, server.ec2_id, server.created_at)
            self._servers.mirror.put(server.id, stored)

    def server_deleted(self, server_id: str) -> None:
        self.removed(EntityKind.SERVER, server_id)
        if self._servers.mirror is not None:
            self._servers.mirror.delete(server_id)

    def port_and_mac_holder(self, port: Port) -> tuple[Any, str | None]:
        """The stored port with this id (or None), and another port holding its MAC.

        A stored port has ``network_id`` and ``server_id`` attributes.
        """
        self._ports.on_put()
        mirror = self._ports.mirror
        return self._stored_and_holder(
            port.id, port.mac_address, (mirror.by_id, mirror.id_by_mac) if mirror else None,
            queries.PORT_BY_ID_OR_MAC, {"id": port.id, "mac_address": port.mac_address})

    def _stored_and_holder(
        self,
        entity_id: str,
        unique: str,
        mirrored: tuple[Mapping[str, Any], Mapping[str, str]] | None,
        query: Executable,
        params: dict[str, str],
    ) -> tuple[Any, str | None]:
        """The stored row with ``entity_id`` (or None), and the id of another row holding
        the same ``unique`` value (a server's name, a port's MAC): from the mirror
        (by id, id by unique value) in bulk, else by ``query``."""
        if mirrored is not None:
            by_id, id_by_unique = mirrored
            holder = id_by_unique.get(unique)
            return by_id.get(entity_id), holder if holder != entity_id else None
        rows = self._run(query, params).all()
        old = next((row for row in rows if row.id == entity_id), None)
        return old, next((row.id for row in rows if row.id != entity_id), None)

    def address_holder(self, port: Port, addresses: Sequence[str]) -> tuple[str, str] | None:
        """(ip, other port) when another port on the network holds one of the addresses."""
        if not addresses:
            return None
        mirror = self._ports.mirror
        if mirror is not None:
            for address in addresses:
                holder = mirror.id_by_address.get((port.network_id, address))
                if holder is not None and holder != port.id:
                    return address, holder
            return None
        params = {"network_id": port.network_id, "addresses": list(addresses), "port_id": port.id}
        taken = self._run(queries.IPS_TAKEN, params).first()
        return (taken.ip_address, taken.port_id) if taken is not None else None

    def port_stored(self, port: Port) -> None:
        if self._ports.mirror is not None:
            addresses = tuple(fixed.ip_address for fixed in port.fixed_ips)
            stored = StoredPort(port.network_id, port.server_id, port.mac_address, addresses)
            self._ports.mirror.put(port.id, stored)

    def port_released(self, port_id: str) -> None:
        if self._ports.mirror is not None:
            self._ports.mirror.by_id[port_id].server_id = None

    def port_deleted(self, port_id: str) -> None:
        if self._ports.mirror is not None:
            self._ports.mirror.delete(port_id)
