from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.inventory import (
    NET2,
    SUBNET,
    SUBNET2,
    SUBNET6,
    in_one_transaction,
    port,
    seed,
    server,
    snapshot,
)

from cloudseed.errors import CloudseedError, Conflict, Invalid, NotFound
from cloudseed.model import FixedIp, Network, Router, Subnet
from cloudseed.store import SqlStore
from cloudseed.store.writer import SqlWriter

Action = Callable[[SqlWriter], object]


def _port_on_net2_then_delete_net2(writer: SqlWriter) -> None:
    writer.put_network(NET2)
    writer.put_port(port(2, network_id="net-2", fixed_ips=()))
    writer.delete_network("net-2")


def _router_on_subnet_then_delete_subnet(writer: SqlWriter) -> None:
    writer.put_subnet(SUBNET6)
    writer.put_router(Router("rtr-2", "router2", ("sub-6",)))
    writer.delete_subnet("sub-6")


def _move_used_subnet(writer: SqlWriter) -> None:
    writer.put_network(NET2)
    writer.put_subnet(Subnet("sub-1", "net-2", "10.0.0.0/24", 4))


def _port_on_subnet_of_other_network(writer: SqlWriter) -> None:
    writer.put_network(NET2)
    writer.put_subnet(SUBNET2)
    writer.put_port(port(2, fixed_ips=(FixedIp("sub-2", "10.0.0.50"),)))


# (action, error class, field for Conflict or kind for NotFound, words in the message)
CASES: dict[str, tuple[Action, type[CloudseedError], str, str]] = {
    "network name taken": (
        lambda w: w.put_network(Network("net-9", "net1")),
        Conflict,
        "name",
        "net-1",
    ),
    "router name taken": (
        lambda w: w.put_router(Router("rtr-9", "router1")),
        Conflict,
        "name",
        "rtr-1",
    ),
    "server name taken": (
        lambda w: w.put_server(server(9, name="server1")),
        Conflict,
        "name",
        "srv-1",
    ),
    "mac taken": (
        lambda w: w.put_port(port(2, mac_address="FA:16:3E:00:00:01")),
        Conflict,
        "mac_address",
        "port-1",
    ),
    "ip taken on the network": (
        lambda w: w.put_port(port(2, ip="10.0.0.11")),
        Conflict,
        "fixed_ips",
        "port-1",
    ),
    "ip listed twice": (
        lambda w: w.put_port(
            port(2, fixed_ips=(FixedIp("sub-1", "10.0.0.50"), FixedIp("sub-1", "10.0.0.50")))
        ),
        Conflict,
        "fixed_ips",
        "twice",
    ),
    "ip outside the subnet": (
        lambda w: w.put_port(port(2, ip="10.9.9.9")),
        Invalid,
        "fixed_ips",
        "10.0.0.0/24",
    ),
    "subnet of another network": (_port_on_subnet_of_other_network, Conflict, "fixed_ips", "net-2"),
    "explicit ec2 id taken": (lambda w: w.put_server(server(2, ec2_id=1)), Conflict, "ec2_id", ""),
    "router lists a subnet twice": (
        lambda w: w.put_router(Router("rtr-2", "router2", ("sub-1", "sub-1"))),
        Conflict,
        "subnet_ids",
        "twice",
    ),
    "delete network with subnets": (
        lambda w: w.delete_network("net-1"),
        Conflict,
        "subnets",
        "sub-1",
    ),
    "delete network with ports": (_port_on_net2_then_delete_net2, Conflict, "ports", "port-2"),
    "delete subnet used by ports": (
        lambda w: w.delete_subnet("sub-1"),
        Conflict,
        "ports",
        "port-1",
    ),
    "delete subnet attached to a router": (
        _router_on_subnet_then_delete_subnet,
        Conflict,
        "routers",
        "rtr-2",
    ),
    "delete key pair used by servers": (
        lambda w: w.delete_keypair("key1"),
        Conflict,
        "servers",
        "server1",
    ),
    "move a used subnet to another network": (_move_used_subnet, Conflict, "network_id", "port-1"),
    "shrink a subnet away from its ports": (
        lambda w: w.put_subnet(Subnet("sub-1", "net-1", "10.0.0.128/25", 4)),
        Conflict,
        "cidr",
        "10.0.0.11",
    ),
    "port on a missing network": (
        lambda w: w.put_port(port(2, network_id="nope", fixed_ips=())),
        NotFound,
        "network",
        "",
    ),
    "port for a missing server": (lambda w: w.put_port(port(2, "nope")), NotFound, "server", ""),
    "fixed ip on a missing subnet": (
        lambda w: w.put_port(port(2, fixed_ips=(FixedIp("nope", "10.0.0.50"),))),
        NotFound,
        "subnet",
        "",
    ),
    "subnet on a missing network": (
        lambda w: w.put_subnet(Subnet("sub-9", "nope", "10.1.0.0/24", 4)),
        NotFound,
        "network",
        "",
    ),
    "router on a missing subnet": (
        lambda w: w.put_router(Router("rtr-2", "router2", ("nope",))),
        NotFound,
        "subnet",
        "",
    ),
    "server with a missing key pair": (
        lambda w: w.put_server(server(2, key_name="nope")),
        NotFound,
        "keypair",
        "",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_integrity_violation_raises_and_leaves_the_store_unchanged(
    store: SqlStore, case: str
) -> None:
    action, error, field_or_kind, words = CASES[case]
    seed(store)
    before = snapshot(store)
    with pytest.raises(error) as caught:
        in_one_transaction(
            store,
            lambda w: w.put_network(Network("net-x", "earlier-write-in-the-same-transaction")),
            action,
        )
    failure = caught.value
    if isinstance(failure, Conflict | Invalid):
        assert failure.field == field_or_kind
    else:
        assert isinstance(failure, NotFound)
        assert failure.kind == field_or_kind
    assert words in failure.message
    assert snapshot(store) == before


def test_store_is_usable_after_a_rejected_transaction(store: SqlStore) -> None:
    seed(store)
    with pytest.raises(Conflict), store.write() as writer:
        writer.put_server(server(2, ec2_id=1))
    with store.write() as writer:
        created = writer.put_server(server(2))
    assert created.ec2_id == 2
    assert store.get_server("server2") == created


def test_a_port_may_keep_its_own_mac_and_ip_when_updated(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_port(port(1, "srv-1", name="renamed"))
    assert store.get_port("port-1").name == "renamed"


def test_same_ip_on_two_networks_is_allowed(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_network(NET2)
        writer.put_subnet(SUBNET2)
        writer.put_port(port(2, network_id="net-2", fixed_ips=(FixedIp("sub-2", "10.0.0.11"),)))
    assert len(store.list_ports()) == 2


def test_a_subnet_may_grow_under_its_ports(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_subnet(Subnet("sub-1", "net-1", "10.0.0.0/16", 4))
    assert store.get_subnet("sub-1").cidr == "10.0.0.0/16"
    assert SUBNET.cidr != "10.0.0.0/16"
