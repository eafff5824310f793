"""Making a large write transaction cheap: buffered inserts and mirrors.

A bulk import (ten thousand servers, each with a port) would otherwise pay
several database round trips per entity — one to check the name or MAC, one
per INSERT — and over a network to PostgreSQL that dominates. Two devices
remove them, both safe only because the transaction holds the writers' lock:

- ``InsertBuffer`` keeps the rows of new servers, ports and fixed IPs and
  writes them with one multi-row INSERT per table. It is flushed before any
  other statement runs, so every query, update and delete still sees them.
- ``PortMirror`` / ``ServerMirror`` hold in memory the few columns the
  writer's checks need (ids, names, MACs, IPs), loaded with one query each
  once a transaction has written more than ``MIRROR_AFTER_PUTS`` of that kind.
  Small transactions never load them and ask the database instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Table, insert, select

from cloudseed.store.schema import port_fixed_ips, ports, servers

# A control-API call writes one or two entities; an import writes thousands.
# Past this many puts of one kind, loading that kind's keys wins.
MIRROR_AFTER_PUTS = 64
# Rows per multi-row INSERT, bounding the memory a huge import holds.
FLUSH_AFTER_ROWS = 5000
# Foreign keys point backwards in this list, so flushing in order is safe.
_FLUSH_ORDER = (servers, ports, port_fixed_ips)


class InsertBuffer:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rows: dict[Table, list[dict[str, Any]]] = {table: [] for table in _FLUSH_ORDER}
        self._count = 0

    def add(self, table: Table, rows: list[dict[str, Any]]) -> None:
        self._rows[table].extend(rows)
        self._count += len(rows)
        if self._count >= FLUSH_AFTER_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row; raises IntegrityError like any INSERT."""
        if not self._count:
            return
        self._count = 0
        for table in _FLUSH_ORDER:
            rows, self._rows[table] = self._rows[table], []
            if rows:
                self._conn.execute(insert(table), rows)


@dataclass(slots=True)
class StoredServer:
    name: str
    ec2_id: int
    created_at: str


@dataclass(slots=True)
class StoredPort:
    network_id: str
    server_id: str | None
    mac_address: str
    addresses: tuple[str, ...]


class ServerMirror:
    def __init__(self, conn: Connection) -> None:
        self.by_id: dict[str, StoredServer] = {}
        self.id_by_name: dict[str, str] = {}
        query = select(servers.c.id, servers.c.name, servers.c.ec2_id, servers.c.created_at)
        for row in conn.execute(query):
            self.put(row.id, StoredServer(row.name, row.ec2_id, row.created_at))

    def put(self, server_id: str, stored: StoredServer) -> None:
        self.delete(server_id)
        self.by_id[server_id] = stored
        self.id_by_name[stored.name] = server_id

    def delete(self, server_id: str) -> None:
        old = self.by_id.pop(server_id, None)
        if old is not None:
            self.id_by_name.pop(old.name, None)


class PortMirror:
    def __init__(self, conn: Connection) -> None:
        self.by_id: dict[str, StoredPort] = {}
        self.id_by_mac: dict[str, str] = {}
        self.id_by_address: dict[tuple[str, str], str] = {}  # (network_id, ip) → port id
        addresses: dict[str, list[str]] = {}
        fixed = select(port_fixed_ips.c.port_id, port_fixed_ips.c.ip_address).order_by(
            port_fixed_ips.c.port_id, port_fixed_ips.c.position
        )
        for fixed_row in conn.execute(fixed):
            addresses.setdefault(fixed_row.port_id, []).append(fixed_row.ip_address)
        query = select(ports.c.id, ports.c.network_id, ports.c.server_id, ports.c.mac_address)
        for row in conn.execute(query):
            stored = StoredPort(
                row.network_id, row.server_id, row.mac_address, tuple(addresses.get(row.id, ()))
            )
            self.put(row.id, stored)

    def put(self, port_id: str, stored: StoredPort) -> None:
        self.delete(port_id)
        self.by_id[port_id] = stored
        self.id_by_mac[stored.mac_address] = port_id
        for address in stored.addresses:
            self.id_by_address[(stored.network_id, address)] = port_id

    def delete(self, port_id: str) -> None:
        old = self.by_id.pop(port_id, None)
        if old is None:
            return
        self.id_by_mac.pop(old.mac_address, None)
        for address in old.addresses:
            self.id_by_address.pop((old.network_id, address), None)


Mirror = TypeVar("Mirror", ServerMirror, PortMirror)


class LazyMirror(Generic[Mirror]):
    """Counts puts and builds the mirror once they pass the threshold."""

    def __init__(self, build: Callable[[], Mirror]) -> None:
        self._build: Callable[[], Mirror] = build
        self._puts = 0
        self.mirror: Mirror | None = None

    def on_put(self) -> None:
        self._puts += 1
        if self.mirror is None and self._puts > MIRROR_AFTER_PUTS:
            self.mirror = self._build()
