"""Mutations inside one write transaction, with integrity checks and change
recording.

Every ``put_*`` applies the inventory's invariants (``rules.py``) to what it
stores, whoever calls it, so no entry point can store what they refuse.

The transaction already holds the writers' lock (see ``sql.SqlStore.write``),
so what ``Known`` remembers cannot go stale before commit.

Every method records what it changed in ``changes``: the entity itself, plus
a TOUCH for each server whose rendered metadata may differ, and for each
network and router whose agent resolution ((network or router, ip) → port)
may differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Executable, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from cloudseed.errors import Conflict, NotFound
from cloudseed.model import (
    GuestAttribute,
    IdentityKey,
    KeyPair,
    Network,
    PhoneHome,
    Port,
    Router,
    Server,
    Subnet,
)
from cloudseed.store import codec, guest_attributes, queries, rules
from cloudseed.store.bulk import InsertBuffer
from cloudseed.store.changes import ChangeSet
from cloudseed.store.integrity import conflict_from, ip_in_cidr, names
from cloudseed.store.known import Known
from cloudseed.store.protocol import EntityKind
from cloudseed.store.reader import SqlReader
from cloudseed.store.schema import (
    identity_keys,
    keypairs,
    networks,
    passwords,
    phone_homes,
    port_fixed_ips,
    ports,
    router_subnets,
    routers,
    servers,
    subnets,
)

T = TypeVar("T")
NETWORK, SUBNET, ROUTER = EntityKind.NETWORK, EntityKind.SUBNET, EntityKind.ROUTER
PORT, SERVER, KEYPAIR = EntityKind.PORT, EntityKind.SERVER, EntityKind.KEYPAIR
IDENTITY_KEY = EntityKind.IDENTITY_KEY
GUEST_ATTRIBUTES = EntityKind.GUEST_ATTRIBUTES


class SqlWriter:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.changes = ChangeSet()
        self._buffer = InsertBuffer(conn)
        self._known = Known(self._run, self._flushed)

    def reader(self) -> SqlReader:
        return SqlReader(self._read_here)

    def _read_here(self, read: Callable[[Connection], T], snapshot: bool = False) -> T:
        # Already one transaction: every read is on the writer's snapshot.
        return read(self._flushed())

    def flush(self) -> None:
        """Write buffered rows; the store calls this before commit."""
        self._flushed()

    # -- networks and subnets -------------------------------------------------

    def put_network(self, network: Network) -> None:
        _check_identity(network.id, network.name)
        rules.check_int(network.mtu, "mtu", rules.MIN_MTU, rules.MAX_MTU)
        exists = self._claim_name(networks, "network", network.id, network.name)
        self._save(networks, exists, codec.network_values(network))
        self._known.added(NETWORK, network.id)
        self.changes.put(NETWORK, network.id)
        if exists:  # a new network has no ports yet
            self._touch_servers_on([network.id])

    def delete_network(self, network_id: str) -> None:
        self._require_row(networks, "network", network_id)
        what = f"network {network_id}"
        self._refuse_if_used(
            "subnets", what, select(subnets.c.id), subnets.c.network_id, network_id
        )
        self._refuse_if_used("ports", what, select(ports.c.id), ports.c.network_id, network_id)
        self._run(delete(networks).where(networks.c.id == network_id))
        self._known.removed(NETWORK, network_id)
        self.changes.delete(NETWORK, network_id)

    def put_subnet(self, subnet: Subnet) -> None:
        rules.check_id(subnet.id, "id")
        rules.check_text(subnet.name, "name")
        rules.check_subnet(subnet)
        self._known.require(NETWORK, subnet.network_id)
        old = self._run(queries.SUBNET_PLACE, {"id": subnet.id}).first()
        if old is not None:
            self._check_subnet_move(subnet, old.network_id, old.cidr)
        self._save(subnets, old is not None, codec.subnet_values(subnet))
        self._known.subnet_changed(subnet.id, subnet)
        self.changes.put(SUBNET, subnet.id)
        self._touch_servers_on({subnet.network_id, old.network_id if old else subnet.network_id})
        if old is not None and old.network_id != subnet.network_id:
            # The routers on this subnet now lead to another network.
            found = select(router_subnets.c.router_id).where(
                router_subnets.c.subnet_id == subnet.id
            )
            for router_id in self._run(found).scalars():
                self.changes.touch(ROUTER, router_id)

    def delete_subnet(self, subnet_id: str) -> None:
        network_id = self._known.subnet(subnet_id).network_id
        what = f"subnet {subnet_id}"
        users = select(port_fixed_ips.c.port_id)
        self._refuse_if_used("ports", what, users, port_fixed_ips.c.subnet_id, subnet_id)
        routers_on = select(router_subnets.c.router_id)
        self._refuse_if_used("routers", what, routers_on, router_subnets.c.subnet_id, subnet_id)
        self._run(delete(subnets).where(subnets.c.id == subnet_id))
        self._known.subnet_changed(subnet_id, None)
        self.changes.delete(SUBNET, subnet_id)
        self._touch_servers_on([network_id])

    def _check_subnet_move(self, subnet: Subnet, old_network_id: str, old_cidr: str) -> None:
        if subnet.network_id == old_network_id and subnet.cidr == old_cidr:
            return
        used = self._run(
            select(port_fixed_ips.c.port_id, port_fixed_ips.c.ip_address).where(
                port_fixed_ips.c.subnet_id == subnet.id
            )
        ).all()
        if used and subnet.network_id != old_network_id:
            users = names(sorted({row.port_id for row in used}))
            raise Conflict(
                "network_id", f"subnet {subnet.id} cannot change network while ports {users} use it"
            )
        outside = sorted(r.ip_address for r in used if not ip_in_cidr(r.ip_address, subnet.cidr))
        if outside:
            raise Conflict("cidr", f"{subnet.cidr} would leave fixed IPs {names(outside)} outside")

    # -- routers --------------------------------------------------------------

    def put_router(self, router: Router) -> None:
        _check_identity(router.id, router.name)
        exists = self._claim_name(routers, "router", router.id, router.name)
        for subnet_id in router.subnet_ids:
            self._known.subnet(subnet_id)
        if len(set(router.subnet_ids)) != len(router.subnet_ids):
            raise Conflict("subnet_ids", "a subnet is listed twice")
        before = self._router_networks(router.id) if exists else set()
        self._save(routers, exists, {"id": router.id, "name": router.name})
        self._run(delete(router_subnets).where(router_subnets.c.router_id == router.id))
        if router.subnet_ids:
            attached = [
                {"router_id": router.id, "subnet_id": subnet_id, "position": position}
                for position, subnet_id in enumerate(router.subnet_ids)
            ]
            self._run(insert(router_subnets), attached)
        self._known.routers_changed()
        self.changes.put(ROUTER, router.id)
        # Servers on the router's old and new networks change "routed".
        self._touch_servers_on(before | self._router_networks(router.id))

    def delete_router(self, router_id: str) -> None:
        self._require_row(routers, "router", router_id)
        before = self._router_networks(router_id)
        self._run(delete(router_subnets).where(router_subnets.c.router_id == router_id))
        self._run(delete(routers).where(routers.c.id == router_id))
        self._known.routers_changed()
        self.changes.delete(ROUTER, router_id)
        self._touch_servers_on(before)

    def _router_networks(self, router_id: str) -> set[str]:
        return set(self.reader().router_network_ids(router_id))

    # -- ports ----------------------------------------------------------------

    def put_port(self, port: Port, *, move: bool = False) -> None:
        """Store the port; changing the owner of an owned port needs ``move``."""
        rules.check_id(port.id, "id")
        rules.check_text(port.name, "name")
        mac = rules.normalise_mac(port.mac_address, "mac_address")
        if mac != port.mac_address:  # one spelling per MAC, so uniqueness holds
            port = dataclasses.replace(port, mac_address=mac)
        if port.floating_ip is not None:
            rules.check_canonical(port.floating_ip, "floating_ip")
            rules.check_unicast(port.floating_ip, "floating_ip")
        self._known.require(NETWORK, port.network_id)
        if port.server_id is not None:
            self._known.require(SERVER, port.server_id)
        old, holder = self._known.port_and_mac_holder(port)
        if old is not None:
            rules.check_port_move(port.id, old.server_id, port.server_id, move, "server_id")
        if holder is not None:
            raise Conflict("mac_address", f"{port.mac_address} is already used by port {holder}")
        self._check_fixed_ips(port)
        values = codec.port_values(port)
        if old is None:
            self._buffer.add(ports, [{**values, "seq": self._known.next_port_seq()}])
            self._buffer.add(port_fixed_ips, codec.fixed_ip_values(port))
        else:
            self._run(delete(port_fixed_ips).where(port_fixed_ips.c.port_id == port.id))
            self._run(update(ports).where(ports.c.id == port.id), values)
            if port.fixed_ips:
                self._run(insert(port_fixed_ips), codec.fixed_ip_values(port))
        self._known.port_stored(port)
        self.changes.put(PORT, port.id)
        self._touch_port_neighbours(port.network_id, port.server_id)
        if old is not None:
            self._touch_port_neighbours(old.network_id, old.server_id)

    def delete_port(self, port_id: str) -> None:
        old = self._run(queries.PORT_BY_ID_OR_MAC, {"id": port_id, "mac_address": None}).first()
        if old is None:
            raise NotFound("port", port_id)
        self._run(delete(port_fixed_ips).where(port_fixed_ips.c.port_id == port_id))
        self._run(delete(ports).where(ports.c.id == port_id))
        self._known.port_deleted(port_id)
        self.changes.delete(PORT, port_id)
        self._touch_port_neighbours(old.network_id, old.server_id)

    def _check_fixed_ips(self, port: Port) -> None:
        addresses = [fixed.ip_address for fixed in port.fixed_ips]
        if len(set(addresses)) != len(addresses):
            raise Conflict("fixed_ips", "an IP address is listed twice")
        dhcp_port = rules.is_dhcp_port_name(port.name, port.server_id)
        for fixed in port.fixed_ips:
            subnet = self._known.subnet(fixed.subnet_id)
            if subnet.network_id != port.network_id:
                raise Conflict(
                    "fixed_ips",
                    f"subnet {fixed.subnet_id} belongs to network {subnet.network_id}, "
                    f"not to the port's network {port.network_id}",
                )
            rules.check_canonical(fixed.ip_address, "fixed_ips")
            rules.check_fixed_ip(subnet, fixed.ip_address, "fixed_ips", dhcp_port=dhcp_port)
        taken = self._known.address_holder(port, addresses)
        if taken is not None:
            address, holder = taken
            raise Conflict(
                "fixed_ips",
                f"{address} is already used on network {port.network_id} by port {holder}",
            )

    def _touch_port_neighbours(self, network_id: str, server_id: str | None) -> None:
        self.changes.touch(SERVER, server_id)
        # Agents resolve (network or router, ip) → port: their answers for this
        # network, and for every router in front of it, may differ now.
        self.changes.touch(NETWORK, network_id)
        for router_id in self._known.routers_on(network_id):
            self.changes.touch(ROUTER, router_id)

    # -- servers --------------------------------------------------------------

    def put_server(self, server: Server) -> Server:
        _check_identity(server.id, server.name)
        rules.check_server_fields(server)
        old, holder = self._known.server_and_name_holder(server)
        if holder is not None:
            raise Conflict("name", f"server name {server.name!r} is already used by {holder}")
        if server.key_name is not None:
            self._known.require(KEYPAIR, server.key_name)
        if old is not None:
            # ec2_id and created_at are the store's, fixed at creation.
            server = dataclasses.replace(server, ec2_id=old.ec2_id, created_at=old.created_at)
            self._save(servers, True, codec.server_values(server))
        else:
            server = dataclasses.replace(
                server,
                ec2_id=server.ec2_id or self._known.next_ec2_id(),
                created_at=server.created_at or _utc_now(),
            )
            self._known.ec2_id_used(server.ec2_id)
            self._buffer.add(servers, [codec.server_values(server)])
        self._known.server_stored(server)
        self.changes.put(SERVER, server.id)
        return server

    def delete_server(self, server_id: str) -> None:
        self._require_row(servers, "server", server_id)
        held = self._run(
            select(ports.c.id, ports.c.network_id).where(ports.c.server_id == server_id)
        ).all()
        self._run(update(ports).where(ports.c.server_id == server_id).values(server_id=None))
        for row in held:
            self.changes.put(PORT, row.id)
            self._touch_port_neighbours(row.network_id, None)
            self._known.port_released(row.id)
        self._run(delete(passwords).where(passwords.c.server_id == server_id))
        self._run(delete(servers).where(servers.c.id == server_id))
        self._known.server_deleted(server_id)
        self.changes.delete(SERVER, server_id)

    # -- key pairs and passwords ----------------------------------------------

    def put_keypair(self, keypair: KeyPair) -> None:
        rules.check_keypair_name(keypair.name, "name")
        exists = self._run(queries.KEYPAIR, {"name": keypair.name}).first() is not None
        self._save(keypairs, exists, codec.keypair_values(keypair), key="name")
        self._known.added(KEYPAIR, keypair.name)
        self.changes.put(KEYPAIR, keypair.name)
        users = self._run(select(servers.c.id).where(servers.c.key_name == keypair.name))
        for server_id in users.scalars():
            self.changes.touch(SERVER, server_id)

    def delete_keypair(self, name: str) -> None:
        self._known.require(KEYPAIR, name)
        what = f"key pair {name!r}"
        self._refuse_if_used("servers", what, select(servers.c.name), servers.c.key_name, name)
        self._run(delete(keypairs).where(keypairs.c.name == name))
        self._known.removed(KEYPAIR, name)
        self.changes.delete(KEYPAIR, name)

    def clear_password(self, server_id: str) -> None:
        self._known.require(SERVER, server_id)
        result = self._run(delete(passwords).where(passwords.c.server_id == server_id))
        if result.rowcount:
            self.changes.touch(SERVER, server_id)

    def set_password_if_absent(self, server_id: str, value: str) -> bool:
        """Insert the password unless one exists; True when this call stored it."""
        self._known.require(SERVER, server_id)
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(passwords)
            .values(server_id=server_id, value=value)
            .on_conflict_do_nothing(index_elements=[passwords.c.server_id])
            # RETURNING, not rowcount: drivers need not report rowcount for INSERT.
            .returning(passwords.c.server_id)
        )
        stored = self._run(statement).first() is not None
        if stored:
            self.changes.touch(SERVER, server_id)
        return stored

    def record_phone_home_if_absent(self, report: PhoneHome) -> PhoneHome | None:
        """Store the report unless this boot already reported; the stored one, or None."""
        self._known.require(SERVER, report.server_id)
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        values = dataclasses.asdict(report) | {"booted_at": _utc_now()}
        statement = (
            dialect.insert(phone_homes)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[phone_homes.c.server_id])
            .returning(phone_homes.c.server_id)
        )
        if self._run(statement).first() is None:
            return None
        self.changes.touch(SERVER, report.server_id)
        return PhoneHome(**values)

    def clear_phone_home(self, server_id: str) -> None:
        """Forget the report so the guest's next boot can phone home again."""
        self._known.require(SERVER, server_id)
        result = self._run(delete(phone_homes).where(phone_homes.c.server_id == server_id))
        if result.rowcount:
            self.changes.touch(SERVER, server_id)

    def add_identity_key(self, key: IdentityKey, keep: int) -> None:
        """Make ``key`` the signing key; keep it and the ``keep - 1`` newest before it."""
        self._run(insert(identity_keys).values(**dataclasses.asdict(key)))
        self.changes.put(IDENTITY_KEY, key.kid)
        ordered = self._run(select(identity_keys.c.kid).order_by(
            identity_keys.c.created_at.desc(), identity_keys.c.kid)).scalars().all()
        # The new key is the newest even when the clock did not move.
        retired = [kid for kid in ordered if kid != key.kid][max(keep - 1, 0):]
        if retired:
            self._run(delete(identity_keys).where(identity_keys.c.kid.in_(retired)))
            for kid in retired:
                self.changes.delete(IDENTITY_KEY, kid)

    # -- guest attributes (store/guest_attributes.py) -------------------------

    def put_guest_attribute(self, attribute: GuestAttribute, *, now: float) -> None:
        self._known.require(SERVER, attribute.server_id)
        stamped = dataclasses.replace(attribute, updated_at=_utc_now())
        guest_attributes.put(self._run, stamped, now)
        self.changes.put(GUEST_ATTRIBUTES, attribute.server_id)

    def delete_guest_attribute(
        self, server_id: str, namespace: str, key: str, *, now: float | None
    ) -> bool:
        self._known.require(SERVER, server_id)
        removed = guest_attributes.remove(self._run, server_id, namespace, key, now)
        if removed or now is not None:  # a guest's miss still spent its budget: keep that
            self.changes.put(GUEST_ATTRIBUTES, server_id)
        return removed

    def clear_guest_attributes(self, server_id: str) -> int:
        self._known.require(SERVER, server_id)
        cleared = guest_attributes.clear(self._run, server_id)
        if cleared:
            self.changes.put(GUEST_ATTRIBUTES, server_id)
        return cleared

    # -- helpers --------------------------------------------------------------

    def _run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        conn = self._flushed()
        try:
            return conn.execute(statement, params)
        except IntegrityError as exc:
            raise conflict_from(exc) from None

    def _flushed(self) -> Connection:
        """The connection, once every buffered row is in the database."""
        try:
            self._buffer.flush()
        except IntegrityError as exc:
            raise conflict_from(exc) from None
        return self._conn

    def _save(self, table: Table, exists: bool, values: dict[str, Any], key: str = "id") -> None:
        if exists:
            self._run(update(table).where(table.c[key] == values[key]), values)
        else:
            self._run(insert(table), values)

    def _require_row(self, table: Table, kind: str, entity_id: str) -> None:
        if self._run(select(table.c.id).where(table.c.id == entity_id)).first() is None:
            raise NotFound(kind, entity_id)

    def _claim_name(self, table: Table, kind: str, entity_id: str, name: str) -> bool:
        """Check no other entity of this kind has the name; True if ``entity_id`` exists."""
        rows = self._run(
            select(table.c.id).where((table.c.id == entity_id) | (table.c.name == name))
        ).all()
        holder = next((row.id for row in rows if row.id != entity_id), None)
        if holder is not None:
            raise Conflict("name", f"{kind} name {name!r} is already used by {kind} {holder}")
        return any(row.id == entity_id for row in rows)

    def _refuse_if_used(
        self, field: str, what: str, users: Any, reference: Any, entity_id: str
    ) -> None:
        found = sorted(str(v) for v in self._run(users.where(reference == entity_id)).scalars())
        if found:
            raise Conflict(field, f"{what} is still used by {field} {names(found)}")

    def _touch_servers_on(self, network_ids: Iterable[str]) -> None:
        wanted = sorted(set(network_ids))
        if wanted:
            found = self._run(queries.SERVERS_ON_NETWORKS, {"network_ids": wanted})
            for server_id in found.scalars():
                self.changes.touch(SERVER, server_id)


def _check_identity(entity_id: str, name: str) -> None:
    rules.check_id(entity_id, "id")
    rules.check_text(name, "name")


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
