"""Small inventories for store tests: one network with a subnet, a key pair,
a router and servers with one port each — enough for every rule to bite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudseed.model import (
    EndpointState,
    FixedIp,
    HostRoute,
    ImdsOptions,
    InjectedFile,
    Ipv6Mode,
    KeyPair,
    KeyType,
    Network,
    Port,
    Router,
    Server,
    Subnet,
    TokenPolicy,
)
from cloudseed.store import SqlStore
from cloudseed.store.writer import SqlWriter

NET = Network("net-1", "net1", mtu=1450)
NET2 = Network("net-2", "net2")
SUBNET = Subnet(
    "sub-1",
    "net-1",
    "10.0.0.0/24",
    4,
    gateway_ip="10.0.0.1",
    dns_nameservers=("10.0.0.2", "9.9.9.9"),
    host_routes=(HostRoute("192.168.0.0/16", "10.0.0.254"),),
    name="sub1",
)
SUBNET6 = Subnet(
    "sub-6", "net-1", "fd00::/64", 6, ipv6_address_mode=Ipv6Mode.SLAAC, enable_dhcp=False
)
SUBNET2 = Subnet("sub-2", "net-2", "10.0.0.0/24", 4)  # same CIDR, other network
KEY = KeyPair("key1", KeyType.SSH, "ssh-ed25519 AAAAC3Nz key1@test", "aa:bb")
ROUTER = Router("rtr-1", "router1", ("sub-1",))


def server(n: int, **changes: Any) -> Server:
    values: dict[str, Any] = {
        "id": f"srv-{n}",
        "name": f"server{n}",
        "hostname": f"server{n}",
        "project_id": "proj-1",
    }
    values.update(changes)
    return Server(**values)


def port(n: int, server_id: str | None = None, ip: str | None = None, **changes: Any) -> Port:
    values: dict[str, Any] = {
        "id": f"port-{n}",
        "network_id": "net-1",
        "mac_address": f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}",
        "fixed_ips": (FixedIp("sub-1", ip or f"10.0.0.{10 + n}"),),
        "server_id": server_id,
    }
    values.update(changes)
    return Port(**values)


FULL_SERVER = server(
    9,
    user_id="user-1",
    availability_zone="az1",
    flavor_name="m1.large",
    image_id="img-1",
    launch_index=2,
    reservation_id="r-0001",
    key_name="key1",
    metadata={"role": "db", "tier": "gold"},
    user_data=b"#cloud-config\n\x00\xff binary",
    files=(InjectedFile("/etc/motd", b"hello\x00"), InjectedFile("/root/x", b"")),
    config_drive=True,
    imds=ImdsOptions(TokenPolicy.REQUIRED, EndpointState.DISABLED),
    created_at="2024-05-01T12:00:00Z",
)


def seed(store: SqlStore) -> None:
    """net1 (10.0.0.0/24) behind router1, key1, server1 + port-1 (10.0.0.11)."""
    with store.write() as writer:
        writer.put_network(NET)
        writer.put_subnet(SUBNET)
        writer.put_router(ROUTER)
        writer.put_keypair(KEY)
        writer.put_server(server(1, key_name="key1"))
        writer.put_port(port(1, "srv-1"))


def snapshot(store: SqlStore) -> dict[str, object]:
    """Everything the store holds, for "nothing changed" assertions."""
    return {
        "revision": store.revision(),
        "networks": store.list_networks(),
        "subnets": store.list_subnets(),
        "routers": store.list_routers(),
        "ports": store.list_ports(),
        "servers": store.list_servers(),
        "keypairs": store.list_keypairs(),
        "passwords": {s.id: store.get_password(s.id) for s in store.list_servers()},
        "changes": store.changes_since(0),
    }


def in_one_transaction(store: SqlStore, *actions: Callable[[SqlWriter], object]) -> None:
    with store.write() as writer:
        for action in actions:
            action(writer)
