"""Integrity rules the database cannot say well, and the translation of the
ones it enforces.

The writer checks references and uniqueness itself so that the error names
the field and the holder; the database constraints stay as the last line of
defence, and ``conflict_from`` turns any violation that still reaches them
into a ``Conflict`` naming the field — no SQLAlchemy error leaves the store.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from sqlalchemy.exc import IntegrityError

from cloudseed.errors import Conflict

# Constraint (PostgreSQL name, or SQLite "table.column" list) → field.
_FIELDS: dict[str, str] = {
    "uq_networks_name": "name",
    "networks.name": "name",
    "uq_routers_name": "name",
    "routers.name": "name",
    "uq_servers_name": "name",
    "servers.name": "name",
    "uq_servers_ec2_id": "ec2_id",
    "servers.ec2_id": "ec2_id",
    "uq_ports_mac_address": "mac_address",
    "ports.mac_address": "mac_address",
    "uq_port_fixed_ips_network_id_ip_address": "fixed_ips",
    "port_fixed_ips.network_id, port_fixed_ips.ip_address": "fixed_ips",
    "pk_passwords": "password",
    "passwords.server_id": "password",
    "fk_servers_key_name": "key_name",
    "fk_ports_server_id": "server_id",
    "fk_ports_network_id": "network_id",
    "fk_subnets_network_id": "network_id",
    "fk_port_fixed_ips_subnet_id": "fixed_ips",
    "fk_router_subnets_subnet_id": "subnet_ids",
}
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<columns>[\w., ]+)")


def conflict_from(error: IntegrityError) -> Conflict:
    """The Conflict that a database constraint violation stands for."""
    constraint = _constraint_name(error)
    field = _FIELDS.get(constraint or "", "reference")
    if constraint and (constraint.startswith("fk_") or constraint == "FOREIGN KEY"):
        return Conflict(field, "refers to a record that does not exist, or is still referred to")
    return Conflict(field, "already in use")


def _constraint_name(error: IntegrityError) -> str | None:
    diag = getattr(error.orig, "diag", None)
    if diag is not None:  # psycopg
        name = getattr(diag, "constraint_name", None)
        return str(name) if name else None
    message = str(error.orig)
    match = _SQLITE_UNIQUE.search(message)
    if match:
        return match.group("columns").strip()
    if "FOREIGN KEY" in message:
        return "FOREIGN KEY"
    return None


def ip_in_cidr(ip_address: str, cidr: str) -> bool:
    """True when the address lies inside the network (a malformed one never does)."""
    network = _network(cidr)
    try:
        return network is not None and ipaddress.ip_address(ip_address) in network
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    # A bulk import checks thousands of addresses against the same few subnets.
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def names(values: list[str], limit: int = 5) -> str:
    """ "a, b, c" — or "a, b, c, d, e and 7 more" — for error messages."""
    shown = ", ".join(values[:limit])
    return shown if len(values) <= limit else f"{shown} and {len(values) - limit} more"
