"""The store's contract: one interface, two backends (SQLite, PostgreSQL).

Writes happen in a ``Writer`` obtained from ``Store.write()``; everything done
in one ``with`` block is one transaction and bumps the revision exactly once,
recording every entity it touched — plus every server whose rendered metadata
or resolution the write can change — as ``Change`` rows. Readers follow
``changes_since`` / ``wait_for_change`` and drop exactly what changed.

Revisions are assigned in commit order (writers are serialised on the
revision row), so a reader that has seen revision R has seen everything up to
R, and "changes since R" never skips a late committer.

Validation of *limits* belongs to the control service; the store enforces
*integrity*: unique names, unique MACs, one IP per network, references that
exist. Integrity violations raise ``cloudseed.errors.Conflict`` (or
``NotFound`` for a missing reference) and roll the whole transaction back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

from cloudseed.model import (
    AuditRecord,
    GuestAttribute,
    IdentityKey,
    KeyPair,
    Network,
    PhoneHome,
    Port,
    Router,
    Server,
    ServerView,
    Subnet,
)
from cloudseed.store.health import StoreHealth

if TYPE_CHECKING:
    from cloudseed.store.resolution import ResolutionScan

T = TypeVar("T")


class EntityKind(StrEnum):
    NETWORK = "network"
    SUBNET = "subnet"
    ROUTER = "router"
    PORT = "port"
    SERVER = "server"
    KEYPAIR = "keypair"
    # An identity key added or retired: every signed identity changes.
    IDENTITY_KEY = "identity_key"
    # A server's guest attributes (id: the server's). Not a TOUCH of the
    # server: its rendered documents do not hold them.
    GUEST_ATTRIBUTES = "guest_attributes"


class ChangeOp(StrEnum):
    PUT = "put"  # created or updated
    DELETE = "delete"
    # The entity itself did not change but what is derived from it did (a
    # server whose subnet changed, a router whose network gained a port).
    TOUCH = "touch"


@dataclass(frozen=True, slots=True)
class Change:
    revision: int
    kind: EntityKind
    id: str  # key names for key pairs, UUIDs for the rest
    op: ChangeOp


class Writer(Protocol):
    """Mutations inside one transaction. ``put_*`` inserts or replaces by id."""

    def put_network(self, network: Network) -> None: ...
    def delete_network(self, network_id: str) -> None: ...
    def put_subnet(self, subnet: Subnet) -> None: ...
    def delete_subnet(self, subnet_id: str) -> None: ...
    def put_router(self, router: Router) -> None: ...
    def delete_router(self, router_id: str) -> None: ...
    def put_port(self, port: Port, *, move: bool = False) -> None:
        """Store the port. Giving an owned port another owner (or none) needs ``move``."""
        ...

    def delete_port(self, port_id: str) -> None: ...
    def put_server(self, server: Server) -> Server:
        """Store the server; returns it with ``ec2_id`` assigned (on create)."""
        ...

    def delete_server(self, server_id: str) -> None:
        """Delete the server and its password; its ports are released (server_id=None)."""
        ...

    def put_keypair(self, keypair: KeyPair) -> None: ...
    def delete_keypair(self, name: str) -> None: ...
    def clear_password(self, server_id: str) -> None: ...
    def clear_phone_home(self, server_id: str) -> None: ...
    def add_identity_key(self, key: IdentityKey, keep: int) -> None: ...
    def put_guest_attribute(self, attribute: GuestAttribute, *, now: float) -> None:
        """The guest's write: checked, counted against its write budget at ``now``."""
        ...

    def delete_guest_attribute(
        self, server_id: str, namespace: str, key: str, *, now: float | None
    ) -> bool:
        """Delete one; True if it existed. ``now`` given: a guest write, spent from its budget."""
        ...

    def clear_guest_attributes(self, server_id: str) -> int:
        """The operator's clear: every attribute of the server; how many there were."""
        ...

    # Reads inside the transaction (see the writer's own uncommitted changes).
    def reader(self) -> Reader: ...


class Reader(Protocol):
    """Read-only queries. Each call is consistent on its own."""

    def revision(self) -> int: ...
    def store_id(self) -> str:
        """A random id made with the store: another store at the same place has another."""
        ...
    def token_key(self) -> bytes:
        """The IMDSv2 token key made with the store (a secret), for when none is set."""
        ...

    def list_networks(self) -> Sequence[Network]: ...
    def get_network(self, id_or_name: str) -> Network:
        """Raise NotFound when absent."""
        ...

    def list_subnets(self, network_id: str | None = None) -> Sequence[Subnet]: ...
    def get_subnet(self, subnet_id: str) -> Subnet: ...
    def list_routers(self) -> Sequence[Router]: ...
    def get_router(self, id_or_name: str) -> Router: ...
    def list_ports(
        self, network_id: str | None = None, server_id: str | None = None
    ) -> Sequence[Port]: ...
    def get_port(self, port_id: str) -> Port: ...
    def list_servers(self) -> Sequence[Server]: ...
    def get_server(self, id_or_name: str) -> Server: ...
    def list_keypairs(self) -> Sequence[KeyPair]: ...
    def get_keypair(self, name: str) -> KeyPair: ...
    def get_password(self, server_id: str) -> str: ...
    def get_phone_home(self, server_id: str) -> PhoneHome | None: ...
    def list_phone_homes(self) -> Sequence[PhoneHome]: ...
    def list_audit(self, server_id: str, limit: int,
                   before_id: int | None = None) -> Sequence[AuditRecord]: ...
    def list_identity_keys(self) -> Sequence[IdentityKey]:
        """Newest first: the first signs, the rest only verify."""
        ...

    def list_guest_attributes(self, server_id: str) -> Sequence[GuestAttribute]:
        """The server's guest attributes by namespace and key (none for an unknown server)."""
        ...

    def server_view(self, server_id: str) -> ServerView:
        """Everything to render one server, read in one transaction. NotFound if absent."""
        ...

    def server_views(
        self, server_ids: Sequence[str] | None, limit: int, *, after: str = ""
    ) -> tuple[int, Sequence[ServerView]]:
        """(revision, views) of many servers on one snapshot: ``server_ids`` (absent ones
        left out) or, when None, the first ``limit`` servers by id after ``after`` (pages
        of the whole fleet). A few statements per thousands of servers, never one per
        server."""
        ...

    def ports_with_ip(self, network_ids: Sequence[str], ip_address: str) -> Sequence[Port]:
        """Ports on any of these networks holding this fixed IP (agent resolution)."""
        ...

    def ports_with_mac(self, network_ids: Sequence[str], mac_address: str) -> Sequence[Port]: ...

    def router_network_ids(self, router_id: str) -> Sequence[str]:
        """Networks of the subnets attached to the router."""
        ...

    def scan_resolution(self, consume: Callable[[ResolutionScan], T]) -> T:
        """Run ``consume`` inside one read snapshot of routers' networks and ports' addresses."""
        ...

    def server_id_by_ip(self, ip_address: str) -> str | None:
        """Direct mode: the server owning this fixed or floating IP, if exactly one."""
        ...


class Store(Reader, Protocol):
    """A reader plus transactions and the change feed."""

    # Reachable or not, since when and why: every tier's /healthz reads it.
    health: StoreHealth

    def write(self) -> AbstractContextManager[Writer]:
        """One transaction. Commits (bumping the revision once) when the block exits cleanly."""
        ...

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append access-audit records: no revision, no change feed (a log)."""
        ...

    def prune_audit(self, server_ids: Sequence[str], keep: int, older_than: str) -> int:
        """Drop audit rows older than ``older_than`` and beyond each server's ``keep``."""
        ...

    def record_phone_home_once(self, report: PhoneHome) -> PhoneHome | None:
        """Store the report unless one is stored; the stored report, or None. Atomic."""
        ...

    def set_password_once(self, server_id: str, password: str) -> bool:
        """Store the password if none is set; False if one already was. Atomic across processes."""
        ...

    def changes_since(self, revision: int, limit: int = 10000) -> Sequence[Change]:
        """Changes with revision > ``revision``, oldest first."""
        ...

    def wait_for_change(self, revision: int, timeout_seconds: float) -> int:
        """Block until the store's revision is > ``revision`` or the timeout ends; return it."""
        ...

    def follow(self, revision: int, timeout_seconds: float) -> Iterator[Change]:
        """Wait for the next change after ``revision`` and yield all changes since it."""
        ...

    def close(self) -> None: ...
