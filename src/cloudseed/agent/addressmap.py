"""(router or network, guest address) → server, held in memory before any guest asks.

The whole answer the agent needs is built once, in bulk, from one store
snapshot (``AddressMap.build``: a few streamed statements, never one query per
address), then kept current from the change feed (``digest`` in the
follower's thread reads the new state of what changed, ``apply`` on the
owner's thread puts it in). ``resolve`` is pure memory: no store, no thread.

Resolution follows Neutron (anchors §2.4): a router means the networks of the
subnets attached to it, a network means itself. The guest's address is found
among the ports on those networks; a link-local IPv6 source that no port holds
is matched by the MAC its EUI-64 interface id encodes. Exactly one port, bound
to a server, identifies the guest; anything else is a ``NotFound`` naming the
address and where it was searched. Two tenants using 10.0.0.5 behind
different routers (or on different networks) never meet: every key carries
its network.

Nothing here knows about HTTP, so any process that must answer "which server
is this (scope, address)?" in-process (the agent today; a shared namespace
front later) can hold one. Interface:

    m = AddressMap.build(store)              # in a thread: reads the store
    m.revision                               # the revision it reflects
    m.resolve(scope, address) -> Identity | NotFound
    update = digest(changes, store)          # in the follower's thread
    m.apply(update, revision) -> bool        # on the owner's thread; True if it changed

Memory: ports live in slots (``agent/packed.py``): per port its id and
server id (16 bytes each as UUIDs), project, network and MAC as array items,
and one ``Int64Table`` entry per IPv4 address, per MAC and per port id. IPv6
addresses and a port's second and later addresses sit in plain dicts: they
cost more per entry, and the budget in docs/DECISIONS.md is stated for them.
"""

from __future__ import annotations

import ipaddress
import socket
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cloudseed.agent.packed import IdColumn, Int64Table, id_key
from cloudseed.agent.resolve import Identity, Scope, ScopeKind, eui64_mac
from cloudseed.errors import NotFound
from cloudseed.store.protocol import Change, ChangeOp, EntityKind, Reader
from cloudseed.store.resolution import PortAddresses, ResolutionScan

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NO_PROJECT = 0  # project slot 0 is "" (a port without a server)


@dataclass
class MapUpdate:
    """The new state of what a batch of changes touched, read in one snapshot."""

    ports: dict[str, PortAddresses | None] = field(default_factory=dict)  # None: gone
    # Every router's networks, when a router, subnet or network changed.
    routers: dict[str, tuple[str, ...]] | None = None

    def __bool__(self) -> bool:
        return bool(self.ports) or self.routers is not None


def digest(changes: Sequence[Change], reader: Reader) -> MapUpdate:
    """Changes → the new state of the ports and routers they name (reads the store).

    TOUCHes are skipped: the store touches a port's network, routers and
    server whenever the port changes, and the port's own change says it
    precisely. A server's PUT may change its project, so its ports are read;
    deleting a server releases its ports, which the feed names as port PUTs.
    """
    port_ids: set[str] = set()
    server_ids: set[str] = set()
    routers = False
    for change in changes:
        if change.op is ChangeOp.TOUCH:
            continue
        if change.kind is EntityKind.PORT:
            port_ids.add(change.id)
        elif change.kind is EntityKind.SERVER:
            server_ids.add(change.id)
        elif change.kind in (EntityKind.ROUTER, EntityKind.SUBNET, EntityKind.NETWORK):
            # Rare; a subnet may move between networks: re-read every router.
            routers = True
    if not (port_ids or server_ids or routers):
        return MapUpdate()

    def read(scan: ResolutionScan) -> MapUpdate:
        update = MapUpdate(ports=dict.fromkeys(port_ids))
        for port in scan.ports_by_id(sorted(port_ids)):
            update.ports[port.id] = port
        for port in scan.ports_of_servers(sorted(server_ids)):
            update.ports[port.id] = port
        if routers:
            update.routers = _router_table(scan.router_networks())
        return update

    return reader.scan_resolution(read)


def _router_table(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for router_id, network_id in pairs:
        grouped.setdefault(router_id, []).append(network_id)
    return {router_id: tuple(sorted(nets)) for router_id, nets in grouped.items()}


def _mac_key(mac: str) -> int:
    try:
        return int(mac.replace(":", ""), 16)  # 0 (never a port's MAC) = not indexed
    except ValueError:
        return 0


class AddressMap:
    def __init__(self, expected_ports: int = 0) -> None:
        self.revision = 0
        self._network_slot: dict[str, int] = {}
        self._networks: list[str] = []
        self._routers: dict[str, tuple[int, ...]] = {}
        self._project_slot: dict[str, int] = {"": NO_PROJECT}
        self._projects: list[str] = [""]
        # Ports by slot.
        self._port_ids = IdColumn()
        self._server_ids = IdColumn()
        self._port_project = array("I")
        self._port_network = array("I")
        self._port_mac = array("Q")
        self._port_v4 = array("Q")  # its first IPv4 key, 0 when none
        self._port_more: dict[int, tuple[int, ...]] = {}  # other address keys
        self._free: list[int] = []
        # Indexes.
        self._by_port_id = Int64Table(expected_ports)
        self._port_id_clashes: dict[str, int] = {}  # ids whose id_key another id holds
        self._by_v4 = Int64Table(expected_ports)  # (network slot + 1) << 32 | IPv4 → port slot
        self._by_v6: dict[int, int] = {}  # (network slot + 1) << 128 | IPv6 → port slot
        self._by_mac = Int64Table(expected_ports)  # MAC (unique in the store) → port slot

    # -- building -----------------------------------------------------------

    @classmethod
    def build(cls, reader: Reader) -> AddressMap:
        """Everything resolution needs, from one snapshot of the store."""

        def read(scan: ResolutionScan) -> AddressMap:
            built = cls(scan.port_count())  # sized once: no rehash while building
            built.revision = scan.revision()
            built._set_routers(_router_table(scan.router_networks()))
            # Two plain scans joined here by port id: on SQLite a third of the time of
            # one join ordered by port (which walks indexes at random).
            for port in scan.ports_without_addresses():
                built._put_port(port)
            for port_id, text in scan.fixed_ips():
                slot = built._find_port(port_id)
                if slot >= 0:  # the port is in the same snapshot
                    built._add_address(slot, text)
            return built

        return reader.scan_resolution(read)

    def apply(self, update: MapUpdate, revision: int) -> bool:
        """Put the new state in; True if anything resolution reads changed."""
        self.revision = max(self.revision, revision)
        if not update:
            return False
        for port_id, port in update.ports.items():
            slot = self._find_port(port_id)
            if slot >= 0:
                self._remove_port(port_id, slot)
            if port is not None:
                self._put_port(port)
        if update.routers is not None:
            self._set_routers(update.routers)
        return True

    # -- resolving ----------------------------------------------------------

    def resolve(self, scope: Scope, address: Address) -> Identity | NotFound:
        ip = str(address)
        if scope.kind is ScopeKind.ROUTER:
            networks = self._routers.get(scope.id, ())
            if not networks:
                return NotFound("router", scope.id, f"router {scope.id} has no networks")
            where = f"the networks of router {scope.id}"
        else:
            slot = self._network_slot.get(scope.id)
            networks = () if slot is None else (slot,)
            where = f"network {scope.id}"
        found = [p for p in (self._port_at(n, address) for n in networks) if p >= 0]
        if not found:
            mac = eui64_mac(address)
            if mac is not None:
                p = self._by_mac.get(_mac_key(mac))
                if p >= 0 and self._port_network[p] in networks:
                    found = [p]
        if len(found) != 1:
            reason = "no port" if not found else f"{len(found)} ports"
            return NotFound("port", ip, f"{reason} with IP {ip} on {where}")
        port = found[0]
        server_id = self._server_ids.get(port)
        if not server_id:
            port_id = self._port_ids.get(port)
            return NotFound("server", ip, f"port {port_id} with IP {ip} on {where} "
                            "is not attached to a server")
        project = self._projects[self._port_project[port]]
        return Identity(server_id, project, self._port_ids.get(port))

    def __len__(self) -> int:
        """Ports held."""
        return len(self._by_port_id) + len(self._port_id_clashes)

    def nbytes(self) -> int:
        """Bytes in the packed arrays (the dicts are extra): for /metrics and the bench."""
        arrays = (self._port_project, self._port_network, self._port_mac, self._port_v4)
        return (sum(a.itemsize * len(a) for a in arrays) + self._port_ids.nbytes()
                + self._server_ids.nbytes() + self._by_port_id.nbytes()
                + self._by_v4.nbytes() + self._by_mac.nbytes())

    def _port_at(self, network: int, address: Address) -> int:
        if address.version == 4:
            return self._by_v4.get((network + 1) << 32 | int(address))
        return self._by_v6.get((network + 1) << 128 | int(address), -1)

    # -- bookkeeping --------------------------------------------------------

    def _network(self, network_id: str) -> int:
        slot = self._network_slot.get(network_id)
        if slot is None:
            slot = self._network_slot[network_id] = len(self._networks)
            self._networks.append(network_id)
        return slot

    def _set_routers(self, table: dict[str, tuple[str, ...]]) -> None:
        self._routers = {r: tuple(self._network(n) for n in nets) for r, nets in table.items()}

    def _find_port(self, port_id: str) -> int:
        slot = self._port_id_clashes.get(port_id)
        if slot is not None:
            return slot
        slot = self._by_port_id.get(id_key(port_id))
        return slot if slot >= 0 and self._port_ids.matches(slot, port_id) else -1

    def _put_port(self, port: PortAddresses) -> None:
        slot = self._free.pop() if self._free else len(self._port_network)
        network = self._network(port.network_id)
        project = 0
        if port.server_id is not None:
            name = port.project_id or ""
            project = self._project_slot.get(name, -1)
            if project < 0:
                project = self._project_slot[name] = len(self._projects)
                self._projects.append(name)
        mac = _mac_key(port.mac_address)
        if mac:
            self._by_mac.put(mac, slot)
        if slot == len(self._port_network):
            for column, value in ((self._port_project, project), (self._port_network, network),
                                  (self._port_mac, mac), (self._port_v4, 0)):
                column.append(value)
        else:
            self._port_project[slot], self._port_network[slot] = project, network
            self._port_mac[slot], self._port_v4[slot] = mac, 0
        self._port_ids.set(slot, port.id)
        self._server_ids.set(slot, port.server_id or "")
        key = id_key(port.id)
        holder = self._by_port_id.get(key)
        if holder >= 0 and not self._port_ids.matches(holder, port.id):
            self._port_id_clashes[port.id] = slot
        else:
            self._by_port_id.put(key, slot)
        for text in port.ip_addresses:
            self._add_address(slot, text)

    def _add_address(self, slot: int, text: str) -> None:
        network = self._port_network[slot]
        # Stored addresses are canonical (the writer refuses others); inet_pton is
        # ten times faster than ipaddress, which matters for a million.
        if ":" in text:
            key = (network + 1) << 128 | int.from_bytes(socket.inet_pton(socket.AF_INET6, text))
            self._by_v6[key] = slot
        else:
            key = (network + 1) << 32 | int.from_bytes(socket.inet_pton(socket.AF_INET, text))
            self._by_v4.put(key, slot)
            if not self._port_v4[slot]:
                self._port_v4[slot] = key
                return
        self._port_more[slot] = (*self._port_more.get(slot, ()), key)

    def _remove_port(self, port_id: str, slot: int) -> None:
        # Remove only what still points here: within one batch another port
        # may already have taken this port's address or MAC.
        for key in (self._port_v4[slot], *self._port_more.pop(slot, ())):
            if key >= 1 << 64:
                if self._by_v6.get(key) == slot:
                    del self._by_v6[key]
            elif key:
                self._by_v4.pop_if(key, slot)
        if self._port_mac[slot]:
            self._by_mac.pop_if(self._port_mac[slot], slot)
        if self._port_id_clashes.pop(port_id, None) is None:
            self._by_port_id.pop_if(id_key(port_id), slot)
        self._port_mac[slot] = self._port_v4[slot] = 0
        self._server_ids.set(slot, "")
        self._free.append(slot)
