"""Read queries, shared by the store and by writers.

``SqlReader`` is handed a ``ReadRunner`` that runs one read function on a
connection. The store's runner takes a pooled connection per call; with
``snapshot=True`` (methods of several queries, such as ``server_view``) the
function runs in one read transaction, hence on one snapshot. A writer's
runner uses the writer's own connection, so a writer reads its uncommitted
changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Table, select

from cloudseed.errors import NotFound
from cloudseed.model import (
    AuditRecord,
    GuestAttribute,
    IdentityKey,
    KeyPair,
    KeyType,
    Network,
    PhoneHome,
    Port,
    PortView,
    Router,
    Server,
    ServerView,
    Subnet,
)
from cloudseed.store import audit, codec, queries
from cloudseed.store.resolution import ResolutionScan
from cloudseed.store.schema import (
    guest_attributes,
    identity_keys,
    keypairs,
    networks,
    passwords,
    phone_homes,
    ports,
    router_subnets,
    routers,
    servers,
    subnets,
)

T = TypeVar("T")


class ReadRunner(Protocol):
    def __call__(self, read: Callable[[Connection], T], snapshot: bool = False) -> T: ...


def read_revision(conn: Connection) -> int:
    return int(conn.execute(queries.REVISION).scalar_one())


class SqlReader:
    def __init__(self, run: ReadRunner) -> None:
        self._read = run

    def revision(self) -> int:
        return self._read(read_revision)

    def store_id(self) -> str:
        return str(self._read(lambda conn: conn.execute(queries.STORE_ID).scalar_one()))

    def token_key(self) -> bytes:
        key = self._read(lambda conn: conn.execute(queries.TOKEN_KEY).scalar_one())
        return str(key or "").encode()  # empty: a meta row not made by the migrations

    def list_networks(self) -> Sequence[Network]:
        query = select(networks).order_by(networks.c.name)
        return self._read(lambda conn: [codec.network_from_row(r) for r in conn.execute(query)])

    def get_network(self, id_or_name: str) -> Network:
        row = self._read(lambda conn: _by_id_or_name(conn, networks, id_or_name))
        if row is None:
            raise NotFound("network", id_or_name)
        return codec.network_from_row(row)

    def list_subnets(self, network_id: str | None = None) -> Sequence[Subnet]:
        query = select(subnets).order_by(subnets.c.network_id, subnets.c.cidr, subnets.c.id)
        if network_id is not None:
            query = query.where(subnets.c.network_id == network_id)
        return self._read(lambda conn: [codec.subnet_from_row(r) for r in conn.execute(query)])

    def get_subnet(self, subnet_id: str) -> Subnet:
        query = select(subnets).where(subnets.c.id == subnet_id)
        row = self._read(lambda conn: conn.execute(query).first())
        if row is None:
            raise NotFound("subnet", subnet_id)
        return codec.subnet_from_row(row)

    def list_routers(self) -> Sequence[Router]:
        def read(conn: Connection) -> list[Router]:
            rows = conn.execute(select(routers).order_by(routers.c.name)).all()
            attached = _router_subnet_ids(conn, None)
            return [Router(row.id, row.name, attached.get(row.id, ())) for row in rows]

        return self._read(read, snapshot=True)

    def get_router(self, id_or_name: str) -> Router:
        def read(conn: Connection) -> Router:
            row = _by_id_or_name(conn, routers, id_or_name)
            if row is None:
                raise NotFound("router", id_or_name)
            return Router(row.id, row.name, _router_subnet_ids(conn, row.id).get(row.id, ()))

        return self._read(read, snapshot=True)

    def list_ports(
        self, network_id: str | None = None, server_id: str | None = None
    ) -> Sequence[Port]:
        query = queries.PORTS
        if network_id is not None:
            query = query.where(ports.c.network_id == network_id)
        if server_id is not None:
            query = query.where(ports.c.server_id == server_id)
        return self._read(lambda conn: codec.ports_from_rows(conn.execute(query)))

    def get_port(self, port_id: str) -> Port:
        query = queries.PORTS.where(ports.c.id == port_id)
        found = self._read(lambda conn: codec.ports_from_rows(conn.execute(query)))
        if not found:
            raise NotFound("port", port_id)
        return found[0]

    def list_servers(self) -> Sequence[Server]:
        query = select(servers).order_by(servers.c.name)
        return self._read(lambda conn: [codec.server_from_row(r) for r in conn.execute(query)])

    def get_server(self, id_or_name: str) -> Server:
        row = self._read(lambda conn: _by_id_or_name(conn, servers, id_or_name))
        if row is None:
            raise NotFound("server", id_or_name)
        return codec.server_from_row(row)

    def list_keypairs(self) -> Sequence[KeyPair]:
        query = select(keypairs).order_by(keypairs.c.name)
        return self._read(lambda conn: [codec.keypair_from_row(r) for r in conn.execute(query)])

    def get_keypair(self, name: str) -> KeyPair:
        row = self._read(lambda conn: conn.execute(queries.KEYPAIR, {"name": name}).first())
        if row is None:
            raise NotFound("keypair", name)
        return codec.keypair_from_row(row)

    def get_password(self, server_id: str) -> str:
        """The server's password, "" when none is set; NotFound for an unknown server."""
        query = (
            select(servers.c.id, passwords.c.value)
            .select_from(servers.outerjoin(passwords, passwords.c.server_id == servers.c.id))
            .where(servers.c.id == server_id)
        )
        row = self._read(lambda conn: conn.execute(query).first())
        if row is None:
            raise NotFound("server", server_id)
        return str(row.value or "")

    def get_phone_home(self, server_id: str) -> PhoneHome | None:
        """The server's phone-home report, None when it has not reported."""
        query = select(phone_homes).where(phone_homes.c.server_id == server_id)
        row = self._read(lambda conn: conn.execute(query).first())
        return None if row is None else PhoneHome(**row._asdict())

    def list_phone_homes(self) -> Sequence[PhoneHome]:
        query = select(phone_homes).order_by(phone_homes.c.server_id)
        rows = self._read(lambda conn: conn.execute(query).all())
        return [PhoneHome(**row._asdict()) for row in rows]

    def list_audit(self, server_id: str, limit: int,
                   before_id: int | None = None) -> Sequence[AuditRecord]:
        """The server's access audit, newest first (``before_id`` pages back)."""
        return self._read(lambda conn: audit.newest(conn, server_id, limit, before_id))

    def list_identity_keys(self) -> Sequence[IdentityKey]:
        """Newest first: the first signs, the rest only verify."""
        query = select(identity_keys).order_by(
            identity_keys.c.created_at.desc(), identity_keys.c.kid)
        rows = self._read(lambda conn: conn.execute(query).all())
        return [IdentityKey(**row._asdict()) for row in rows]
    def list_guest_attributes(self, server_id: str) -> Sequence[GuestAttribute]:
        c = guest_attributes.c
        query = (select(guest_attributes).where(c.server_id == server_id)
                 .order_by(c.namespace, c.key))
        rows = self._read(lambda conn: conn.execute(query).all())
        return [GuestAttribute(**row._asdict()) for row in rows]

    def server_view(self, server_id: str) -> ServerView:
        return self._read(lambda conn: _server_view(conn, server_id), snapshot=True)

    def server_views(
        self, server_ids: Sequence[str] | None, limit: int, *, after: str = ""
    ) -> tuple[int, Sequence[ServerView]]:
        """Many servers' views on one snapshot, a few statements per ``BULK_IDS`` servers."""
        return self._read(lambda conn: _server_views(conn, server_ids, limit, after),
                          snapshot=True)

    def ports_with_ip(self, network_ids: Sequence[str], ip_address: str) -> Sequence[Port]:
        if not network_ids:
            return []
        params = {"network_ids": list(network_ids), "ip_address": ip_address}
        return self._read(
            lambda conn: codec.ports_from_rows(conn.execute(queries.PORTS_WITH_IP, params))
        )

    def ports_with_mac(self, network_ids: Sequence[str], mac_address: str) -> Sequence[Port]:
        if not network_ids:
            return []
        params = {"network_ids": list(network_ids), "mac_address": mac_address.lower()}
        return self._read(
            lambda conn: codec.ports_from_rows(conn.execute(queries.PORTS_WITH_MAC, params))
        )

    def router_network_ids(self, router_id: str) -> Sequence[str]:
        """Networks behind the router, sorted; empty for an unknown router."""
        params = {"router_id": router_id}
        return self._read(
            lambda conn: list(conn.execute(queries.ROUTER_NETWORK_IDS, params).scalars())
        )

    def scan_resolution(self, consume: Callable[[ResolutionScan], T]) -> T:
        """Run ``consume`` on one snapshot of what address resolution reads (streamed)."""
        return self._read(lambda conn: consume(ResolutionScan(conn)), snapshot=True)

    def server_id_by_ip(self, ip_address: str) -> str | None:
        params = {"ip": ip_address}
        found = self._read(
            lambda conn: list(conn.execute(queries.SERVER_IDS_BY_IP, params).scalars())
        )
        return found[0] if len(found) == 1 else None


def _by_id_or_name(conn: Connection, table: Table, key: str) -> Any:
    # An id wins over a name that happens to look like another entity's id.
    rows = conn.execute(select(table).where((table.c.id == key) | (table.c.name == key))).all()
    for row in rows:
        if row.id == key:
            return row
    return rows[0] if rows else None


def _router_subnet_ids(conn: Connection, router_id: str | None) -> dict[str, tuple[str, ...]]:
    query = select(router_subnets).order_by(router_subnets.c.router_id, router_subnets.c.position)
    if router_id is not None:
        query = query.where(router_subnets.c.router_id == router_id)
    grouped: dict[str, list[str]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.router_id, []).append(row.subnet_id)
    return {key: tuple(value) for key, value in grouped.items()}


def _server_view(conn: Connection, server_id: str) -> ServerView:
    head = conn.execute(queries.SERVER_VIEW_HEAD, {"server_id": server_id}).first()
    if head is None:
        raise NotFound("server", server_id)
    port_list = codec.ports_from_rows(
        conn.execute(queries.PORTS_OF_SERVER, {"server_id": server_id})
    )
    return _views(conn, [head], port_list)[0]


# Ids per IN list of a bulk read: under SQLite's bound-parameter limit, and
# few enough statements that 100,000 servers take a few dozen.
BULK_IDS = 5000


def _server_views(
    conn: Connection, server_ids: Sequence[str] | None, limit: int, after: str = ""
) -> tuple[int, list[ServerView]]:
    """(the snapshot's revision, the views of ``server_ids`` -- or of the first ``limit``
    servers by id after ``after`` when None); absent ids are left out."""
    revision = read_revision(conn)
    if server_ids is None:
        heads = list(conn.execute(queries.SERVER_VIEW_HEADS.where(servers.c.id > after)
                                  .order_by(servers.c.id).limit(limit)))
    else:
        wanted = sorted(set(server_ids))[:limit]
        heads = [row for chunk in _chunks(wanted)
                 for row in conn.execute(queries.SERVER_VIEW_HEADS_BY_ID, {"ids": chunk})]
    found = [row.id for row in heads]
    port_list = [port for chunk in _chunks(found)
                 for port in codec.ports_from_rows(
                     conn.execute(queries.PORTS_OF_SERVERS, {"server_ids": chunk}))]
    return revision, _views(conn, heads, port_list)


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start:start + BULK_IDS] for start in range(0, len(ids), BULK_IDS)]


def _views(conn: Connection, heads: Sequence[Any], port_list: Sequence[Port]) -> list[ServerView]:
    """Views of the servers in ``heads`` (SERVER_VIEW_HEAD rows) from their ports."""
    network_ids = sorted({port.network_id for port in port_list})
    subnet_ids = sorted({fixed.subnet_id for port in port_list for fixed in port.fixed_ips})
    network_by_id: dict[str, tuple[Network, bool]] = {}
    subnet_by_id: dict[str, Subnet] = {}
    for chunk in _chunks(network_ids):
        for r in conn.execute(queries.NETWORKS_WITH_ROUTED, {"ids": chunk}):
            network_by_id[r.id] = (codec.network_from_row(r), bool(r.routed))
    for chunk in _chunks(subnet_ids):
        for r in conn.execute(queries.SUBNETS_BY_ID, {"ids": chunk}):
            subnet_by_id[r.id] = codec.subnet_from_row(r)
    by_server: dict[str, list[PortView]] = {}
    for port in port_list:  # NIC order is kept within each server
        network, routed = network_by_id[port.network_id]
        by_server.setdefault(port.server_id or "", []).append(PortView(
            port=port,
            network=network,
            subnets=tuple(subnet_by_id[fixed.subnet_id] for fixed in port.fixed_ips),
            routed=routed,
        ))
    views = []
    for head in heads:
        server = codec.server_from_row(head)
        keypair = None
        if head.key_type is not None:
            keypair = KeyPair(
                server.key_name or "",
                KeyType(head.key_type),
                head.key_public_key,
                head.key_fingerprint,
            )
        views.append(ServerView(
            server=server,
            revision=int(head.revision),
            keypair=keypair,
            ports=tuple(by_server.get(server.id, ())),
            password=head.password or "",
        ))
    return views
