"""Statements built once, executed many times.

Building a SQLAlchemy statement costs more than running it on SQLite; a bulk
import runs the same few statements tens of thousands of times, and the
metadata API's cache-miss lookups run on the hot path. So the frequent ones
are built here, with named parameters, and reused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, exists, func, select, union, update

from cloudseed.store.schema import (
    keypairs,
    meta,
    networks,
    passwords,
    port_fixed_ips,
    ports,
    router_subnets,
    servers,
    subnets,
)


def _port_select() -> Select[Any]:
    """Ports with their fixed IPs, one row per fixed IP, in NIC order."""
    return (
        select(
            ports,
            port_fixed_ips.c.subnet_id.label("fixed_subnet_id"),
            port_fixed_ips.c.ip_address.label("fixed_ip_address"),
        )
        .select_from(ports.outerjoin(port_fixed_ips, port_fixed_ips.c.port_id == ports.c.id))
        .order_by(ports.c.seq, ports.c.id, port_fixed_ips.c.position)
    )


PORTS = _port_select()

# -- revision ------------------------------------------------------------------

REVISION = select(meta.c.revision).where(meta.c.id == 1)
STORE_ID = select(meta.c.store_id).where(meta.c.id == 1)
TOKEN_KEY = select(meta.c.token_key).where(meta.c.id == 1)
BUMP_REVISION = (
    update(meta)
    .where(meta.c.id == 1)
    .values(revision=meta.c.revision + 1)
    .returning(meta.c.revision)
)

# -- reads on the guest path ----------------------------------------------------

# server_view: the server with its password, key pair and the revision, then
# its ports, their networks (with whether a router serves them), their subnets.
SERVER_VIEW_HEADS = (
    select(
        servers,
        passwords.c.value.label("password"),
        keypairs.c.type.label("key_type"),
        keypairs.c.public_key.label("key_public_key"),
        keypairs.c.fingerprint.label("key_fingerprint"),
        meta.c.revision.label("revision"),
    )
    .select_from(
        servers.outerjoin(passwords, passwords.c.server_id == servers.c.id)
        .outerjoin(keypairs, keypairs.c.name == servers.c.key_name)
        .join(meta, meta.c.id == 1)
    )
)
SERVER_VIEW_HEAD = SERVER_VIEW_HEADS.where(servers.c.id == bindparam("server_id"))
# The bulk reads (the metadata API's prefetch): the same rows for many servers.
SERVER_VIEW_HEADS_BY_ID = SERVER_VIEW_HEADS.where(
    servers.c.id.in_(bindparam("ids", expanding=True)))
KEYPAIR = select(keypairs).where(keypairs.c.name == bindparam("name"))
PORTS_OF_SERVER = PORTS.where(ports.c.server_id == bindparam("server_id"))
PORTS_OF_SERVERS = PORTS.where(ports.c.server_id.in_(bindparam("server_ids", expanding=True)))
NETWORKS_WITH_ROUTED = select(
    networks,
    exists()
    .select_from(router_subnets.join(subnets, subnets.c.id == router_subnets.c.subnet_id))
    .where(subnets.c.network_id == networks.c.id)
    .label("routed"),
).where(networks.c.id.in_(bindparam("ids", expanding=True)))
SUBNETS_BY_ID = select(subnets).where(subnets.c.id.in_(bindparam("ids", expanding=True)))
PORTS_WITH_IP = PORTS.where(
    ports.c.id.in_(
        select(port_fixed_ips.c.port_id).where(
            port_fixed_ips.c.network_id.in_(bindparam("network_ids", expanding=True)),
            port_fixed_ips.c.ip_address == bindparam("ip_address"),
        )
    )
)
PORTS_WITH_MAC = PORTS.where(
    ports.c.network_id.in_(bindparam("network_ids", expanding=True)),
    ports.c.mac_address == bindparam("mac_address"),
)
ROUTER_NETWORK_IDS = (
    select(subnets.c.network_id)
    .distinct()
    .select_from(router_subnets.join(subnets, subnets.c.id == router_subnets.c.subnet_id))
    .where(router_subnets.c.router_id == bindparam("router_id"))
    .order_by(subnets.c.network_id)
)
# UNION removes duplicates, so two rows mean two different owners.
SERVER_IDS_BY_IP = union(
    select(ports.c.server_id)
    .select_from(port_fixed_ips.join(ports, ports.c.id == port_fixed_ips.c.port_id))
    .where(port_fixed_ips.c.ip_address == bindparam("ip"), ports.c.server_id.is_not(None)),
    select(ports.c.server_id).where(
        ports.c.floating_ip == bindparam("ip"), ports.c.server_id.is_not(None)
    ),
).limit(2)

# -- the writer's per-entity checks ------------------------------------------------

SERVER_BY_ID_OR_NAME = select(servers.c.id, servers.c.ec2_id, servers.c.created_at).where(
    (servers.c.id == bindparam("id")) | (servers.c.name == bindparam("name"))
)
PORT_BY_ID_OR_MAC = select(ports.c.id, ports.c.network_id, ports.c.server_id).where(
    (ports.c.id == bindparam("id")) | (ports.c.mac_address == bindparam("mac_address"))
)
IPS_TAKEN = select(port_fixed_ips.c.port_id, port_fixed_ips.c.ip_address).where(
    port_fixed_ips.c.network_id == bindparam("network_id"),
    port_fixed_ips.c.ip_address.in_(bindparam("addresses", expanding=True)),
    port_fixed_ips.c.port_id != bindparam("port_id"),
)
SUBNET_PLACE = select(
    subnets.c.network_id, subnets.c.cidr, subnets.c.ip_version, subnets.c.gateway_ip,
    subnets.c.enable_dhcp,
).where(subnets.c.id == bindparam("id"))
ROUTERS_ON_NETWORK = (
    select(router_subnets.c.router_id)
    .distinct()
    .select_from(router_subnets.join(subnets, subnets.c.id == router_subnets.c.subnet_id))
    .where(subnets.c.network_id == bindparam("network_id"))
)
SERVERS_ON_NETWORKS = (
    select(ports.c.server_id)
    .distinct()
    .where(
        ports.c.network_id.in_(bindparam("network_ids", expanding=True)),
        ports.c.server_id.is_not(None),
    )
)
MAX_EC2_ID = select(func.max(servers.c.ec2_id))
MAX_PORT_SEQ = select(func.max(ports.c.seq))
