"""What address resolution needs, read in bulk: routers' networks and ports' addresses.

The agent's address map (``agent/addressmap.py``) is built from one snapshot
(``SqlReader.scan_resolution``): the revision, every (router, network) pair,
every port with its MAC, server and that server's project, and every fixed
IP -- plain scans in no order that the map joins by port id, never one query
per address. Rows are streamed (``yield_per``; a server-side cursor on
PostgreSQL), so a million ports never sit in memory as row objects. The new
state of what the change feed names is read with one join grouped by port,
narrowed to those ports or servers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select

from cloudseed.store import queries
from cloudseed.store.schema import port_fixed_ips, ports, router_subnets, servers, subnets

# Rows fetched per round trip while streaming.
STREAM_ROWS = 5000
# Ids per IN (...) when reading the ports a batch of changes names.
IDS_PER_QUERY = 500

ROUTER_NETWORKS = (
    select(router_subnets.c.router_id, subnets.c.network_id)
    .distinct()
    .select_from(router_subnets.join(subnets, subnets.c.id == router_subnets.c.subnet_id))
)
PORT_COUNT = select(func.count()).select_from(ports)
BARE_PORTS = select(
    ports.c.id, ports.c.network_id, ports.c.mac_address, ports.c.server_id, servers.c.project_id
).select_from(ports.outerjoin(servers, servers.c.id == ports.c.server_id))
FIXED_IPS = select(port_fixed_ips.c.port_id, port_fixed_ips.c.ip_address)
PORT_ROWS = (
    select(
        ports.c.id,
        ports.c.network_id,
        ports.c.mac_address,
        ports.c.server_id,
        servers.c.project_id,
        port_fixed_ips.c.ip_address,
    )
    .select_from(
        ports.outerjoin(servers, servers.c.id == ports.c.server_id)
        .outerjoin(port_fixed_ips, port_fixed_ips.c.port_id == ports.c.id)
    )
    # By port only: its rows arrive together, and SQLite walks the primary key with no sort.
    .order_by(ports.c.id)
)


@dataclass(frozen=True, slots=True)
class PortAddresses:
    """One port as resolution sees it."""

    id: str
    network_id: str
    mac_address: str
    server_id: str | None
    project_id: str | None  # the server's; None without a server
    ip_addresses: tuple[str, ...]


class ResolutionScan:
    """Reads on one snapshot; valid only inside ``SqlReader.scan_resolution``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def revision(self) -> int:
        return int(self._conn.execute(queries.REVISION).scalar_one())

    def port_count(self) -> int:
        return int(self._conn.execute(PORT_COUNT).scalar_one())

    def router_networks(self) -> Iterator[tuple[str, str]]:
        """Every (router id, network id) a router reaches through an attached subnet."""
        for row in self._conn.execute(ROUTER_NETWORKS):
            yield row.router_id, row.network_id

    def ports_without_addresses(self) -> Iterator[PortAddresses]:
        """Every port with its server's project, streamed, in no order; ``fixed_ips`` has
        the addresses."""
        for row in self._stream(BARE_PORTS):
            yield PortAddresses(row.id, row.network_id, row.mac_address, row.server_id,
                                row.project_id, ())

    def fixed_ips(self) -> Iterator[tuple[str, str]]:
        """Every (port id, fixed IP), streamed, in no order."""
        for row in self._stream(FIXED_IPS):
            yield row.port_id, row.ip_address

    def ports_by_id(self, port_ids: Sequence[str]) -> Iterator[PortAddresses]:
        """These ports as they are now; an id that is gone is simply absent."""
        return self._chunked(ports.c.id, port_ids)

    def ports_of_servers(self, server_ids: Sequence[str]) -> Iterator[PortAddresses]:
        return self._chunked(ports.c.server_id, server_ids)

    def _chunked(self, column: Any, ids: Sequence[str]) -> Iterator[PortAddresses]:
        unique = sorted(set(ids))
        for start in range(0, len(unique), IDS_PER_QUERY):
            chunk = unique[start:start + IDS_PER_QUERY]
            yield from _grouped(self._stream(PORT_ROWS.where(column.in_(chunk))))

    def _stream(self, statement: Select[Any]) -> Iterator[Any]:
        return iter(self._conn.execute(statement.execution_options(yield_per=STREAM_ROWS)))


def _grouped(rows: Iterator[Any]) -> Iterator[PortAddresses]:
    """Rows ordered by port (one per fixed IP) → one value per port."""
    current: Any = None
    addresses: list[str] = []
    for row in rows:
        if current is None or row.id != current.id:
            if current is not None:
                yield _port(current, addresses)
            current, addresses = row, []
        if row.ip_address is not None:
            addresses.append(row.ip_address)
    if current is not None:
        yield _port(current, addresses)


def _port(row: Any, addresses: list[str]) -> PortAddresses:
    return PortAddresses(row.id, row.network_id, row.mac_address, row.server_id,
                         row.project_id, tuple(addresses))
