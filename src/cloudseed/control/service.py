"""The control operations: every change to the inventory goes through here.

Each mutating operation runs in exactly one store write transaction: it reads
what it needs through the writer (so checks and writes see the same state),
applies the rules that need stored state (IPs taken, MACs taken, metadata
item count after a merge, one owner per port), and writes. Any error raised
inside the ``with`` block rolls the whole operation back, so a refused
request leaves nothing behind and does not move the revision.

Resources are addressed by id or by name. Results are JSON-ready dicts in
the shapes of ``schemas.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

from cloudseed.configdrive.build import DriveFormat, build_drive, parse_format
from cloudseed.configdrive.config import DriveConfig, check_drive_settings
from cloudseed.control import views
from cloudseed.control.builders import (
    build_keypair,
    build_network,
    build_server,
    build_subnet,
    check_no_overlap,
    imds_options,
    new_id,
)
from cloudseed.control.naming import check_hostname
from cloudseed.control.ports import IpRequest, Taken, build_port
from cloudseed.control.schemas import (
    KeypairCreate,
    NetworkCreate,
    PortCreate,
    RouterCreate,
    ServerCreate,
    ServerNic,
    ServerUpdate,
    SubnetCreate,
)
from cloudseed.errors import Conflict, Invalid, LimitExceeded, NotFound
from cloudseed.limits import MAX_METADATA_ITEMS
from cloudseed.model import Network, Port, Router, Server, Subnet
from cloudseed.settings import Settings
from cloudseed.store import rules
from cloudseed.store.protocol import Reader, Store, Writer

Json = dict[str, Any]
T = TypeVar("T")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- lookups by id or name ----------------------------------------------------


def find_subnet(reader: Reader, ref: str, network_id: str | None = None) -> Subnet:
    subnets = reader.list_subnets(network_id)
    for subnet in subnets:
        if subnet.id == ref:
            return subnet
    return _one_named("subnet", ref, [s for s in subnets if s.name == ref])


def find_port(reader: Reader, ref: str) -> Port:
    try:
        return reader.get_port(ref)
    except NotFound:
        return _one_named("port", ref, [p for p in reader.list_ports() if p.name == ref])


def _one_named(kind: str, ref: str, matches: Sequence[T]) -> T:
    if not matches:
        raise NotFound(kind, ref)
    if len(matches) > 1:
        raise Conflict(kind, f"several {kind}s are called {ref!r}; use the id")
    return matches[0]


def subnets_for_router(reader: Reader, ref: str, field: str) -> list[Subnet]:
    """A subnet (id or name), or all the subnets of a network (id or name)."""
    return rules.router_subnets(ref, reader.list_subnets(), reader.list_networks(), field)


class ControlService:
    """The inventory operations on one store."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self._drive_config: DriveConfig | None = None

    def revision(self) -> int:
        return self.store.revision()

    # -- networks and subnets -------------------------------------------------

    def list_networks(self) -> list[Json]:
        by_network: dict[str, list[Subnet]] = {}
        for subnet in self.store.list_subnets():
            by_network.setdefault(subnet.network_id, []).append(subnet)
        return [views.network_view(n, by_network.get(n.id, [])) for n in self.store.list_networks()]

    def get_network(self, ref: str) -> Json:
        network = self.store.get_network(ref)
        return views.network_view(network, self.store.list_subnets(network.id))

    def create_network(self, body: NetworkCreate) -> Json:
        network = build_network(body)
        subnets = [build_subnet(s, network.id, f"subnets[{i}]") for i, s in enumerate(body.subnets)]
        check_no_overlap(subnets, "subnets", f"network {network.name}")
        with self.store.write() as writer:
            reader = writer.reader()
            _refuse_taken_name(reader.list_networks(), network, "network")
            writer.put_network(network)
            for subnet in subnets:
                writer.put_subnet(subnet)
        return views.network_view(network, subnets)

    def delete_network(self, ref: str) -> None:
        with self.store.write() as writer:
            reader = writer.reader()
            network = reader.get_network(ref)
            users = reader.list_ports(network_id=network.id)
            if users:
                raise Conflict(
                    "network", f"network {network.name} has ports {_ids(users)}; delete them first"
                )
            for subnet in reader.list_subnets(network.id):
                _refuse_routed(reader, subnet)
                writer.delete_subnet(subnet.id)
            writer.delete_network(network.id)

    def list_subnets(self, network_ref: str | None = None) -> list[Json]:
        network_id = self.store.get_network(network_ref).id if network_ref else None
        return [views.subnet_view(s) for s in self.store.list_subnets(network_id)]

    def get_subnet(self, ref: str) -> Json:
        return views.subnet_view(find_subnet(self.store, ref))

    def create_subnet(self, network_ref: str, body: SubnetCreate) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            network = reader.get_network(network_ref)
            subnet = build_subnet(body, network.id)
            existing = list(reader.list_subnets(network.id))
            if any(s.id == subnet.id for s in existing):
                raise Conflict("id", f"subnet {subnet.id} already exists")
            check_no_overlap([subnet, *existing], "cidr", f"network {network.name}")
            writer.put_subnet(subnet)
        return views.subnet_view(subnet)

    def delete_subnet(self, ref: str) -> None:
        with self.store.write() as writer:
            reader = writer.reader()
            subnet = find_subnet(reader, ref)
            _refuse_routed(reader, subnet)
            writer.delete_subnet(subnet.id)

    # -- routers --------------------------------------------------------------

    def list_routers(self) -> list[Json]:
        return [views.router_view(r) for r in self.store.list_routers()]

    def get_router(self, ref: str) -> Json:
        return views.router_view(self.store.get_router(ref))

    def create_router(self, body: RouterCreate) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            subnet_ids: list[str] = []
            attached: list[Subnet] = []
            for i, ref in enumerate(body.subnets):
                for subnet in subnets_for_router(reader, ref, f"subnets[{i}]"):
                    if subnet.id not in subnet_ids:
                        subnet_ids.append(subnet.id)
                        attached.append(subnet)
            check_no_overlap(attached, "subnets", f"router {body.name}")
            router = Router(id=body.id or new_id(), name=body.name, subnet_ids=tuple(subnet_ids))
            _refuse_taken_name(reader.list_routers(), router, "router")
            writer.put_router(router)
        return views.router_view(router)

    def delete_router(self, ref: str) -> None:
        with self.store.write() as writer:
            writer.delete_router(writer.reader().get_router(ref).id)

    def router_add_subnet(self, router_ref: str, ref: str) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            router = reader.get_router(router_ref)
            new = subnets_for_router(reader, ref, "subnet")
            for subnet in new:
                if subnet.id in router.subnet_ids:
                    raise Conflict(
                        "subnet", f"router {router.name} is already attached to {subnet.cidr}"
                    )
            current = [reader.get_subnet(s) for s in router.subnet_ids]
            check_no_overlap([*current, *new], "subnet", f"router {router.name}")
            router = dataclasses.replace(
                router, subnet_ids=router.subnet_ids + tuple(s.id for s in new)
            )
            writer.put_router(router)
        return views.router_view(router)

    def router_remove_subnet(self, router_ref: str, ref: str) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            router = reader.get_router(router_ref)
            gone = {s.id for s in subnets_for_router(reader, ref, "subnet")}
            if not gone & set(router.subnet_ids):
                raise NotFound("router subnet", ref, f"router {router.name} is not on {ref!r}")
            router = dataclasses.replace(
                router, subnet_ids=tuple(s for s in router.subnet_ids if s not in gone)
            )
            writer.put_router(router)
        return views.router_view(router)

    # -- ports ----------------------------------------------------------------

    def list_ports(
        self, network_ref: str | None = None, server_ref: str | None = None
    ) -> list[Json]:
        network_id = self.store.get_network(network_ref).id if network_ref else None
        server_id = self.store.get_server(server_ref).id if server_ref else None
        return [views.port_view(p) for p in self.store.list_ports(network_id, server_id)]

    def get_port(self, ref: str) -> Json:
        return views.port_view(find_port(self.store, ref))

    def create_port(self, body: PortCreate) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            network = reader.get_network(body.network)
            port_id = body.id or new_id()
            if body.id is not None and _exists(reader.get_port, body.id):
                raise Conflict("id", f"port {body.id} already exists")
            ips = (
                None
                if body.fixed_ips is None
                else [IpRequest(f.subnet, f.ip_address) for f in body.fixed_ips]
            )
            port = build_port(
                port_id,
                network,
                reader.list_subnets(network.id),
                _taken(reader, network),
                where="port",
                mac=body.mac_address,
                ips=ips,
                name=body.name,
                floating_ip=body.floating_ip,
                tag=body.tag,
            )
            writer.put_port(port)
        return views.port_view(port)

    def delete_port(self, ref: str) -> None:
        with self.store.write() as writer:
            port = find_port(writer.reader(), ref)
            if port.server_id is not None:
                raise Conflict(
                    "port", f"port {port.id} belongs to server {port.server_id}; delete the server"
                )
            writer.delete_port(port.id)

    # -- servers --------------------------------------------------------------

    def list_servers(self) -> list[Json]:
        by_server = views.ports_by_server(self.store.list_ports())
        return [views.server_view(s, by_server.get(s.id, [])) for s in self.store.list_servers()]

    def get_server(self, ref: str) -> Json:
        server = self.store.get_server(ref)
        return views.server_view(server, self.store.list_ports(server_id=server.id))

    def create_server(self, body: ServerCreate) -> Json:
        server_id = body.id or new_id()
        server = build_server(body, server_id, utc_now())
        with self.store.write() as writer:
            reader = writer.reader()
            if body.id is not None and _exists(reader.get_server, body.id):
                raise Conflict("id", f"server {body.id} already exists")
            _refuse_taken_name(reader.list_servers(), server, "server")
            if body.key_name is not None and not _exists(reader.get_keypair, body.key_name):
                raise NotFound("keypair", body.key_name)
            server = writer.put_server(server)
            ports = self._server_ports(writer, reader, server, body)
        return views.server_view(server, ports)

    def _server_ports(
        self, writer: Writer, reader: Reader, server: Server, body: ServerCreate
    ) -> list[Port]:
        ports: list[Port] = []
        taken = Taken.of(reader.list_ports())
        for i, nic in enumerate(body.networks):
            where = f"networks[{i}]"
            if nic.port is not None:
                if nic.network or nic.fixed_ip or nic.fixed_ips or nic.mac_address:
                    raise Invalid(where, "give either a port, or a network with its options")
                port = find_port(reader, nic.port)
                if any(p.id == port.id for p in ports):
                    raise Invalid(f"{where}.port", f"port {port.id} is given twice")
                rules.check_port_move(
                    port.id, port.server_id, server.id, nic.move, f"{where}.port"
                )
                # A tag given with the NIC wins, as Nova's --nic port-id=...,tag=...
                port = dataclasses.replace(port, server_id=server.id, tag=nic.tag or port.tag)
            elif nic.network is not None:
                network = reader.get_network(nic.network)
                port = build_port(
                    new_id(),
                    network,
                    reader.list_subnets(network.id),
                    taken,
                    where=where,
                    mac=nic.mac_address,
                    ips=_nic_addresses(nic, where),
                    server_id=server.id,
                    tag=nic.tag,
                )
            else:
                raise Invalid(where, "give a port or a network")
            writer.put_port(port, move=nic.move)
            ports.append(port)
        return ports

    def update_server(self, ref: str, body: ServerUpdate) -> Json:
        with self.store.write() as writer:
            reader = writer.reader()
            server = reader.get_server(ref)
            changes: dict[str, Any] = {}
            if body.name is not None and body.name != server.name:
                others = [s for s in reader.list_servers() if s.id != server.id]
                _refuse_taken_name(others, dataclasses.replace(server, name=body.name), "server")
                changes["name"] = body.name
            if body.hostname is not None:
                changes["hostname"] = check_hostname(body.hostname)
            if body.imds is not None:
                changes["imds"] = imds_options(body.imds)
            if body.config_drive is not None:
                changes["config_drive"] = body.config_drive
            if changes:
                server = writer.put_server(dataclasses.replace(server, **changes))
            ports = reader.list_ports(server_id=server.id)
        return views.server_view(server, ports)

    def delete_server(self, ref: str, keep_ports: bool = False) -> None:
        """Delete a server; its ports go with it unless ``keep_ports`` (then they are freed)."""
        with self.store.write() as writer:
            reader = writer.reader()
            server = reader.get_server(ref)
            ports = reader.list_ports(server_id=server.id)
            writer.delete_server(server.id)
            if not keep_ports:
                for port in ports:
                    writer.delete_port(port.id)

    # -- server metadata (Nova's server-metadata API) -------------------------

    def get_metadata(self, ref: str) -> dict[str, str]:
        return dict(self.store.get_server(ref).metadata)

    def replace_metadata(self, ref: str, metadata: Mapping[str, str]) -> dict[str, str]:
        return self._write_metadata(ref, lambda _old: dict(metadata))

    def merge_metadata(self, ref: str, metadata: Mapping[str, str]) -> dict[str, str]:
        return self._write_metadata(ref, lambda old: {**old, **metadata})

    def get_metadata_item(self, ref: str, key: str) -> dict[str, str]:
        metadata = self.store.get_server(ref).metadata
        if key not in metadata:
            raise NotFound("metadata item", key)
        return {key: metadata[key]}

    def set_metadata_item(self, ref: str, key: str, meta: Mapping[str, str]) -> dict[str, str]:
        # Nova: the body holds exactly the one item the URI names.
        if len(meta) != 1:
            raise Invalid("meta", "the body must hold exactly one item")
        if key not in meta:
            raise Invalid("meta", f"the body's key does not match the URI's key {key!r}")
        self._write_metadata(ref, lambda old: {**old, key: meta[key]})
        return {key: meta[key]}

    def delete_metadata_item(self, ref: str, key: str) -> None:
        def without(old: dict[str, str]) -> dict[str, str]:
            if key not in old:
                raise NotFound("metadata item", key)
            return {k: v for k, v in old.items() if k != key}

        self._write_metadata(ref, without)

    def _write_metadata(self, ref: str, change: Any) -> dict[str, str]:
        with self.store.write() as writer:
            server = writer.reader().get_server(ref)
            metadata: dict[str, str] = change(dict(server.metadata))
            if len(metadata) > MAX_METADATA_ITEMS:
                raise LimitExceeded(
                    "metadata",
                    MAX_METADATA_ITEMS,
                    f"the server would have {len(metadata)} metadata items; "
                    f"the limit is {MAX_METADATA_ITEMS}",
                )
            writer.put_server(dataclasses.replace(server, metadata=MappingProxyType(metadata)))
        return metadata

    # -- passwords ------------------------------------------------------------

    def get_password(self, ref: str) -> str:
        return self.store.get_password(self.store.get_server(ref).id)

    def clear_password(self, ref: str) -> None:
        with self.store.write() as writer:
            writer.clear_password(writer.reader().get_server(ref).id)

    # -- phone home -----------------------------------------------------------

    def get_phone_home(self, ref: str) -> Json:
        report = self.store.get_phone_home(self.store.get_server(ref).id)
        return views.phone_home_view(report)

    def clear_phone_home(self, ref: str) -> None:
        with self.store.write() as writer:
            writer.clear_phone_home(writer.reader().get_server(ref).id)

    def known_hosts(self, ref: str | None) -> list[str]:
        """known_hosts lines for the server (every one when None) that reported keys."""
        wanted = None if ref is None else self.store.get_server(ref).id
        by_server = views.ports_by_server(self.store.list_ports())
        servers = {s.id: s for s in self.store.list_servers()}
        return [
            line
            for report in self.store.list_phone_homes()
            if wanted in {None, report.server_id} and report.server_id in servers
            for line in views.known_hosts_lines(
                servers[report.server_id], by_server.get(report.server_id, []), report
            )
        ]

    # -- config drive ---------------------------------------------------------

    def build_config_drive(self, ref: str, fmt: str | None) -> tuple[Server, DriveFormat, bytes]:
        """The server's drive image in ``fmt`` (default: configdrive.format)."""
        asked = None if fmt is None else parse_format(fmt)  # a bad request is a 400 first
        config = self._drive_config or check_drive_settings(self.settings)
        self._drive_config = config  # read the vendordata file once, on first use
        drive_format = asked or config.fmt
        server = self.store.get_server(ref)
        view = self.store.server_view(server.id)
        options = config.render_options(datetime.now(UTC).date())
        return server, drive_format, build_drive(view, options, drive_format, config.seed_key)

    # -- key pairs ------------------------------------------------------------

    def list_keypairs(self) -> list[Json]:
        return [views.keypair_view(k) for k in self.store.list_keypairs()]

    def get_keypair(self, name: str) -> Json:
        return views.keypair_view(self.store.get_keypair(name))

    def create_keypair(self, body: KeypairCreate) -> Json:
        keypair = build_keypair(body)
        with self.store.write() as writer:
            if _exists(writer.reader().get_keypair, keypair.name):
                raise Conflict("name", f"key pair {keypair.name!r} already exists")
            writer.put_keypair(keypair)
        return views.keypair_view(keypair)

    def delete_keypair(self, name: str) -> None:
        with self.store.write() as writer:
            writer.delete_keypair(writer.reader().get_keypair(name).name)


# -- helpers ------------------------------------------------------------------


def _exists(getter: Any, key: str) -> bool:
    try:
        getter(key)
    except NotFound:
        return False
    return True


def _refuse_taken_name(existing: Sequence[Any], new: Network | Router | Server, kind: str) -> None:
    for item in existing:
        if item.id == new.id:
            raise Conflict("id", f"{kind} {new.id} already exists")
        if item.name == new.name:
            raise Conflict("name", f"a {kind} called {new.name!r} already exists ({item.id})")


def _refuse_routed(reader: Reader, subnet: Subnet) -> None:
    for router in reader.list_routers():
        if subnet.id in router.subnet_ids:
            raise Conflict(
                "subnet",
                f"subnet {subnet.cidr} is attached to router {router.name}; "
                "remove it from the router first",
            )


def _taken(reader: Reader, network: Network) -> Taken:
    """Addresses taken: every MAC (they are unique everywhere), this network's IPs."""
    taken = Taken(macs={p.mac_address for p in reader.list_ports()})
    taken.ips[network.id] = {
        f.ip_address for p in reader.list_ports(network_id=network.id) for f in p.fixed_ips
    }
    return taken


def _ids(ports: Sequence[Port]) -> str:
    shown = ", ".join(p.id for p in ports[:5])
    return shown + (f" and {len(ports) - 5} more" if len(ports) > 5 else "")


__all__ = ["ControlService", "find_port", "find_subnet"]


def _nic_addresses(nic: ServerNic, where: str) -> list[IpRequest] | None:
    """A new NIC's requested addresses: ``fixed_ip`` (Nova's) or ``fixed_ips``; None = allocate."""
    if nic.fixed_ip is not None and nic.fixed_ips is not None:
        raise Invalid(where, "give fixed_ip or fixed_ips, not both")
    if nic.fixed_ip is not None:
        return [IpRequest(None, nic.fixed_ip)]
    if nic.fixed_ips is not None:
        return [IpRequest(f.subnet, f.ip_address) for f in nic.fixed_ips]
    return None
