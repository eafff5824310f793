"""Bulk import: apply an inventory document all at once, or not at all.

``apply_document`` opens one write transaction, plans the whole document
against the state it reads there — every rule of the single-resource API,
plus name/id matching — and only then writes, in dependency order, exactly
the entities that differ. Any error, in planning or from the store, rolls
everything back. A document that matches the store writes nothing, so the
store's revision does not move (the store drops empty transactions).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from cloudseed.control import addressing, bodies
from cloudseed.control.bodies import parse_body
from cloudseed.control.builders import (
    build_keypair,
    build_server,
    build_subnet,
    check_no_overlap,
    new_id,
)
from cloudseed.control.document import Document, PortDoc, ServerDoc, export_document
from cloudseed.control.ports import IpRequest, Taken, build_port
from cloudseed.control.schemas import FixedIpBody
from cloudseed.control.service import utc_now
from cloudseed.errors import Conflict, Invalid
from cloudseed.model import KeyPair, Network, Port, Router, Server, Subnet
from cloudseed.store import rules
from cloudseed.store.protocol import Reader, Store, Writer

# Progress is reported every this many writes.
PROGRESS_EVERY = 1000
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class ImportResult:
    changed: bool
    revision: int
    created: dict[str, int]
    updated: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "revision": self.revision,
            "created": self.created,
            "updated": self.updated,
        }


# An entity a plan holds (a key pair, network, subnet, router, server or port).
_E = TypeVar("_E")


@dataclass
class Plan:
    keypairs: list[KeyPair] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    subnets: list[Subnet] = field(default_factory=list)
    routers: list[Router] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    # Ids of owned ports the document explicitly moves (``move: true``).
    moves: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        return sum(len(x) for x in (self.keypairs, self.networks, self.subnets,
                                    self.routers, self.servers, self.ports))  # fmt: skip

    def add(self, planned: list[_E], kind: str, old: _E | None, new: _E) -> bool:
        """Plan ``new`` unless it equals what is stored (``old``; None: nothing is),
        counted as created or updated. True when planned."""
        if old == new:
            return False
        planned.append(new)
        (self.updated if old is not None else self.created)[kind] += 1
        return True


def load_document_bytes(body: bytes) -> Document:
    return parse_body(Document, body)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors' aliases: a few lines of nested aliases expand to
    gigabytes once the document is re-encoded as JSON for the control API
    ("billion laughs"), and an inventory document has no use for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)


def load_document_text(text: str) -> Any:
    """A document file's data: JSON (fast) or YAML, nested no deeper than JSON may be."""
    bodies.check_depth(text.encode("utf-8", "surrogatepass"), "document")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, RecursionError) as exc:
        raise Invalid("document", f"neither JSON nor YAML: {exc}") from None


def apply_document(
    store: Store, document: Document, progress: Progress | None = None
) -> ImportResult:
    """Make the store hold what ``document`` declares; one transaction, all or nothing."""
    with store.write() as writer:
        plan = plan_document(writer.reader(), document)
        write_plan(writer, plan, progress)
    return ImportResult(
        changed=plan.size > 0,
        revision=store.revision(),
        created=dict(plan.created),
        updated=dict(plan.updated),
    )


def plan_document(reader: Reader, document: Document) -> Plan:
    """Everything the document changes, fully validated; raises before any write."""
    planner = _Planner(reader)
    planner.keypairs(document)
    planner.networks(document)
    planner.routers(document)
    planner.servers(document)
    planner.ports(document)
    return planner.plan


def write_plan(writer: Writer, plan: Plan, progress: Progress | None = None) -> None:
    total, done = plan.size, 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
            progress("write", done, total)

    for keypair in plan.keypairs:
        writer.put_keypair(keypair)
        tick()
    for network in plan.networks:
        writer.put_network(network)
        tick()
    for subnet in plan.subnets:
        writer.put_subnet(subnet)
        tick()
    for router in plan.routers:
        writer.put_router(router)
        tick()
    # The store's writer buffers inserts and flushes them a batch at a time,
    # so per-entity calls cost one row each, not one statement each.
    for server in plan.servers:
        writer.put_server(server)
        tick()
    for port in plan.ports:
        writer.put_port(port, move=port.id in plan.moves)
        tick()


class _Planner:
    """The store's state, updated in memory as the document is planned."""

    def __init__(self, reader: Reader) -> None:
        self.plan = Plan()
        self.keypair_by_name = {k.name: k for k in reader.list_keypairs()}
        self.network_by_id = {n.id: n for n in reader.list_networks()}
        self.subnet_by_id = {s.id: s for s in reader.list_subnets()}
        self.router_by_id = {r.id: r for r in reader.list_routers()}
        self.server_by_id = {s.id: s for s in reader.list_servers()}
        self.port_by_id = {p.id: p for p in reader.list_ports()}
        # Name → id, kept in step with the dicts above (names are unique).
        self.names: dict[str, dict[str, str]] = {
            "network": {n.name: n.id for n in self.network_by_id.values()},
            "router": {r.name: r.id for r in self.router_by_id.values()},
            "server": {s.name: s.id for s in self.server_by_id.values()},
        }

    # -- lookups over the planned state ---------------------------------------

    def _network(self, ref: str, where: str) -> Network:
        network_id = ref if ref in self.network_by_id else self.names["network"].get(ref)
        if network_id is None:
            raise Invalid(where, f"no network {ref!r} in the document or the store")
        return self.network_by_id[network_id]

    def _subnets_of(self, network_id: str) -> list[Subnet]:
        return [s for s in self.subnet_by_id.values() if s.network_id == network_id]

    def _match(
        self, items: dict[str, Any], kind: str, id_: str | None, name: str, where: str
    ) -> Any:
        """The stored entity this document entry describes: by id, else by name."""
        holder_id = self.names[kind].get(name)
        if id_ is None:
            return None if holder_id is None else items[holder_id]
        if holder_id is not None and holder_id != id_:
            raise Conflict(
                f"{where}.name", f"a {kind} called {name!r} already exists ({holder_id})"
            )
        return items.get(id_)

    def _rename(self, kind: str, old: Any, new: Any) -> None:
        if old is not None and old.name != new.name:
            self.names[kind].pop(old.name, None)
        self.names[kind][new.name] = new.id

    # -- key pairs ------------------------------------------------------------

    def keypairs(self, document: Document) -> None:
        seen: set[str] = set()
        for i, body in enumerate(document.keypairs):
            where = f"keypairs[{i}]"
            _once(seen, body.name, f"{where}.name", "key pair")
            keypair = build_keypair(body, where)
            old = self.keypair_by_name.get(keypair.name)
            if self.plan.add(self.plan.keypairs, "keypairs", old, keypair):
                self.keypair_by_name[keypair.name] = keypair

    # -- networks and subnets -------------------------------------------------

    def networks(self, document: Document) -> None:
        seen: set[str] = set()
        for i, body in enumerate(document.networks):
            where = f"networks[{i}]"
            _once(seen, body.name, f"{where}.name", "network")
            old = self._match(self.network_by_id, "network", body.id, body.name, where)
            network = Network(
                id=old.id if old else body.id or new_id(), name=body.name, mtu=body.mtu
            )
            if self.plan.add(self.plan.networks, "networks", old, network):
                self.network_by_id[network.id] = network
                self._rename("network", old, network)
            for j, sub in enumerate(body.subnets):
                self._subnet(network, sub, f"{where}.subnets[{j}]")
            check_no_overlap(
                self._subnets_of(network.id), f"{where}.subnets", f"network {network.name}"
            )

    def _subnet(self, network: Network, body: Any, where: str) -> None:
        existing = self._subnets_of(network.id)
        old: Subnet | None = None
        if body.id is not None:
            old = self.subnet_by_id.get(body.id)
            if old is not None and old.network_id != network.id:
                raise Conflict(f"{where}.id", f"subnet {body.id} belongs to another network")
        elif body.name:
            old = next((s for s in existing if s.name == body.name), None)
        else:
            old = next((s for s in existing if s.cidr == body.cidr), None)
        subnet = build_subnet(body, network.id, where, old.id if old else body.id or new_id())
        if self.plan.add(self.plan.subnets, "subnets", old, subnet):
            self.subnet_by_id[subnet.id] = subnet

    # -- routers --------------------------------------------------------------

    def routers(self, document: Document) -> None:
        seen: set[str] = set()
        for i, body in enumerate(document.routers):
            where = f"routers[{i}]"
            _once(seen, body.name, f"{where}.name", "router")
            old = self._match(self.router_by_id, "router", body.id, body.name, where)
            subnet_ids: list[str] = []
            for j, ref in enumerate(body.subnets):
                for subnet in self._router_subnets(ref, f"{where}.subnets[{j}]"):
                    if subnet.id not in subnet_ids:
                        subnet_ids.append(subnet.id)
            check_no_overlap(
                [self.subnet_by_id[s] for s in subnet_ids],
                f"{where}.subnets",
                f"router {body.name}",
            )
            router = Router(old.id if old else body.id or new_id(), body.name, tuple(subnet_ids))
            if self.plan.add(self.plan.routers, "routers", old, router):
                self.router_by_id[router.id] = router
                self._rename("router", old, router)

    def _router_subnets(self, ref: str, where: str) -> list[Subnet]:
        subnets, networks = self.subnet_by_id.values(), self.network_by_id.values()
        return rules.router_subnets(ref, list(subnets), list(networks), where)

    # -- servers --------------------------------------------------------------

    def servers(self, document: Document) -> None:
        seen: set[str] = set()
        ec2_ids = {s.ec2_id: s.id for s in self.server_by_id.values()}
        now = utc_now()
        for i, body in enumerate(document.servers):
            where = f"servers[{i}]"
            _once(seen, body.name, f"{where}.name", "server")
            old = self._match(self.server_by_id, "server", body.id, body.name, where)
            server_id = old.id if old else body.id or new_id()
            if body.key_name is not None and body.key_name not in self.keypair_by_name:
                raise Invalid(f"{where}.key_name", f"no key pair called {body.key_name!r}")
            server = build_server(
                body, server_id, body.created_at or (old.created_at if old else now), where
            )
            ec2_id = body.ec2_id or (old.ec2_id if old else 0)
            if ec2_id and ec2_ids.get(ec2_id, server_id) != server_id:
                raise Conflict(
                    f"{where}.ec2_id", f"ec2_id {ec2_id} belongs to server {ec2_ids[ec2_id]}"
                )
            if old is not None:
                # The store keeps these from creation; a document cannot move them.
                ec2_id, server = old.ec2_id, _replace(server, created_at=old.created_at)
            server = _replace(server, ec2_id=ec2_id)
            if ec2_id:
                ec2_ids[ec2_id] = server_id
            if self.plan.add(self.plan.servers, "servers", old, server):
                self.server_by_id[server.id] = server
                self._rename("server", old, server)

    # -- ports ----------------------------------------------------------------

    def ports(self, document: Document) -> None:
        entries: list[tuple[str, PortDoc, str | None]] = [
            (f"ports[{i}]", body, None) for i, body in enumerate(document.ports)
        ]
        for i, server_body in enumerate(document.servers):
            server_id = self.names["server"][server_body.name]
            for j, body in enumerate(_server_ports(server_body, f"servers[{i}]")):
                entries.append((f"servers[{i}].ports[{j}]", body, server_id))
        taken = Taken.of(list(self.port_by_id.values()))
        matched = self._match_ports(entries)
        for old in matched.values():
            if old is not None:
                taken.remove(old)
        for where, body, owner in entries:
            self._port(where, body, owner, matched[where], taken)

    def _match_ports(
        self, entries: Sequence[tuple[str, PortDoc, str | None]]
    ) -> dict[str, Port | None]:
        index = _PortIndex(self.port_by_id.values())
        claimed: dict[str, str] = {}
        matched: dict[str, Port | None] = {}
        for where, body, owner in entries:
            network = self._network(body.network, f"{where}.network")
            old = self._find_port(body, owner, network, index, claimed, where)
            if old is not None:
                if old.id in claimed:
                    raise Invalid(where, f"port {old.id} is also listed at {claimed[old.id]}")
                claimed[old.id] = where
            matched[where] = old
        return matched

    def _find_port(  # noqa: PLR0917
        self,
        body: PortDoc,
        owner: str | None,
        network: Network,
        index: _PortIndex,
        claimed: dict[str, str],
        where: str,
    ) -> Port | None:
        if body.id is not None:
            return self.port_by_id.get(body.id)
        if body.mac_address is not None:
            mac = addressing.normalise_mac(body.mac_address, f"{where}.mac_address")
            return index.by_mac.get(mac)
        for item in body.fixed_ips or ():
            if item.ip_address and (network.id, item.ip_address) in index.by_ip:
                return index.by_ip[(network.id, item.ip_address)]
        if owner is None:
            return None
        candidates = index.by_owner.get((owner, network.id), [])
        return next((p for p in candidates if p.id not in claimed), None)

    def _port(
        self, where: str, body: PortDoc, owner: str | None, old: Port | None, taken: Taken
    ) -> None:
        network = self._network(body.network, f"{where}.network")
        subnets = self._subnets_of(network.id)
        requests = _ip_requests(body, old, network, subnets)
        port = build_port(
            old.id if old else body.id or new_id(),
            network,
            subnets,
            taken,
            where=where,
            mac=body.mac_address or (old.mac_address if old else None),
            ips=requests,
            name=body.name,
            server_id=owner,
            floating_ip=body.floating_ip,
            tag=body.tag,
        )
        taken.add(port)
        if old is not None:
            rules.check_port_move(port.id, old.server_id, owner, body.move, where)
            if old.server_id != owner:
                self.plan.moves.add(port.id)
        if self.plan.add(self.plan.ports, "ports", old, port):
            self.port_by_id[port.id] = port


class _PortIndex:
    """Stored ports by MAC, by (network, IP) and by (server, network)."""

    def __init__(self, ports: Iterable[Port]) -> None:
        self.by_mac: dict[str, Port] = {}
        self.by_ip: dict[tuple[str, str], Port] = {}
        self.by_owner: dict[tuple[str, str], list[Port]] = {}
        for port in ports:
            self.by_mac[port.mac_address] = port
            for fixed in port.fixed_ips:
                self.by_ip[(port.network_id, fixed.ip_address)] = port
            if port.server_id is not None:
                self.by_owner.setdefault((port.server_id, port.network_id), []).append(port)


def _ip_requests(
    body: PortDoc, old: Port | None, network: Network, subnets: Sequence[Subnet]
) -> list[IpRequest] | None:
    """What the document asks for, with unspecified addresses kept from the stored port."""
    kept = (
        {f.subnet_id: f.ip_address for f in old.fixed_ips}
        if old and old.network_id == network.id
        else {}
    )
    if body.fixed_ips is None:
        return [IpRequest(s, ip) for s, ip in kept.items()] if kept else None
    requests = []
    for item in body.fixed_ips:
        ip = item.ip_address
        if ip is None and item.subnet is not None:
            subnet = next((s for s in subnets if item.subnet in (s.id, s.name)), None)
            ip = kept.get(subnet.id) if subnet else None
        requests.append(IpRequest(item.subnet, ip))
    return requests


def _server_ports(body: ServerDoc, where: str) -> list[PortDoc]:
    """A server's ports: its ``ports`` plus the shorthand ``networks`` entries."""
    ports = list(body.ports)
    for i, nic in enumerate(body.networks):
        if nic.port is not None or nic.network is None:
            raise Invalid(
                f"{where}.networks[{i}]", "in a document, list a server's ports under ports"
            )
        ports.append(
            PortDoc(
                network=nic.network,
                mac_address=nic.mac_address,
                fixed_ips=[FixedIpBody(ip_address=nic.fixed_ip)] if nic.fixed_ip else None,
                tag=nic.tag,
            )
        )
    return ports


def _once(seen: set[str], name: str, where: str, kind: str) -> None:
    if name in seen:
        raise Invalid(where, f"the document lists {kind} {name!r} twice")
    seen.add(name)


def _replace(server: Server, **changes: Any) -> Server:
    return dataclasses.replace(server, **changes)


__all__ = [
    "Document",
    "ImportResult",
    "apply_document",
    "export_document",
    "load_document_bytes",
    "load_document_text",
    "plan_document",
]
