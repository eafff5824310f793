from __future__ import annotations

import dataclasses

import pytest
from tests.support.inventory import (
    FULL_SERVER,
    KEY,
    NET,
    NET2,
    ROUTER,
    SUBNET,
    SUBNET6,
    in_one_transaction,
    port,
    seed,
    server,
    snapshot,
)

from cloudseed.errors import NotFound
from cloudseed.model import FixedIp, Network, Router, Subnet
from cloudseed.store import SqlStore
from cloudseed.store.writer import SqlWriter


def test_network_put_get_list_update_delete(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        writer.put_network(NET2)
    assert store.get_network("net-1") == NET
    assert store.get_network("net1") == NET
    assert store.list_networks() == [NET, NET2]
    renamed = Network("net-1", "renamed", mtu=9000)
    with store.write() as writer:
        writer.put_network(renamed)
    assert store.get_network("renamed") == renamed
    with store.write() as writer:
        writer.delete_network("net-2")
    assert store.list_networks() == [renamed]
    with pytest.raises(NotFound):
        store.get_network("net2")


def test_subnet_round_trips_every_field(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        writer.put_subnet(SUBNET)
        writer.put_subnet(SUBNET6)
    assert store.get_subnet("sub-1") == SUBNET
    assert store.get_subnet("sub-6") == SUBNET6
    assert store.list_subnets("net-1") == [SUBNET, SUBNET6]
    assert store.list_subnets("net-2") == []
    changed = dataclasses.replace(SUBNET, gateway_ip=None, dns_nameservers=(), host_routes=())
    with store.write() as writer:
        writer.put_subnet(changed)
        writer.delete_subnet("sub-6")
    assert store.list_subnets() == [changed]


def test_router_keeps_its_subnets_in_order(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        writer.put_subnet(SUBNET)
        writer.put_subnet(SUBNET6)
        writer.put_router(Router("rtr-1", "router1", ("sub-6", "sub-1")))
    assert store.get_router("router1").subnet_ids == ("sub-6", "sub-1")
    with store.write() as writer:
        writer.put_router(Router("rtr-1", "router1", ("sub-1",)))
    assert store.list_routers() == [Router("rtr-1", "router1", ("sub-1",))]
    with store.write() as writer:
        writer.delete_router("rtr-1")
    assert store.list_routers() == []
    with pytest.raises(NotFound):
        store.get_router("rtr-1")


def test_port_round_trips_and_lists_by_network_and_server(store: SqlStore) -> None:
    seed(store)
    two_ips = port(
        2,
        "srv-1",
        fixed_ips=(FixedIp("sub-6", "fd00::5"), FixedIp("sub-1", "10.0.0.99")),
        floating_ip="203.0.113.7",
        name="eth1",
        mac_address="FA:16:3E:AA:BB:CC",
    )
    with store.write() as writer:
        writer.put_subnet(SUBNET6)
        writer.put_port(two_ips)
        writer.put_port(port(3))
    stored = store.get_port("port-2")
    assert stored == dataclasses.replace(two_ips, mac_address="fa:16:3e:aa:bb:cc")
    assert [p.id for p in store.list_ports(server_id="srv-1")] == ["port-1", "port-2"]
    assert [p.id for p in store.list_ports(network_id="net-1")] == ["port-1", "port-2", "port-3"]
    assert store.get_port("port-3").fixed_ips == (FixedIp("sub-1", "10.0.0.13"),)
    with store.write() as writer:
        writer.put_port(dataclasses.replace(stored, fixed_ips=(), server_id=None), move=True)
        writer.delete_port("port-3")
    assert store.get_port("port-2").fixed_ips == ()
    assert [p.id for p in store.list_ports()] == ["port-1", "port-2"]


def test_server_round_trips_every_field(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_keypair(KEY)
        stored = writer.put_server(FULL_SERVER)
    assert stored.ec2_id == 1
    assert store.get_server("srv-9") == stored
    assert store.get_server("server9") == stored
    assert stored == dataclasses.replace(FULL_SERVER, ec2_id=1)


def test_server_without_user_data_keeps_none(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_server(server(1, user_data=None))
        writer.put_server(server(2, user_data=b""))
    assert store.get_server("srv-1").user_data is None
    assert store.get_server("srv-2").user_data == b""


def test_store_assigns_ec2_ids_and_creation_time_once(store: SqlStore) -> None:
    with store.write() as writer:
        first = writer.put_server(server(1))
        second = writer.put_server(server(2))
    with store.write() as writer:
        third = writer.put_server(server(3))
        renamed = writer.put_server(server(1, name="first", ec2_id=77, created_at="1999"))
    assert [first.ec2_id, second.ec2_id, third.ec2_id] == [1, 2, 3]
    assert first.created_at.endswith("Z")
    assert renamed.ec2_id == 1
    assert renamed.created_at == first.created_at
    assert store.get_server("first") == renamed


def test_server_list_is_sorted_by_name(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_server(server(2, name="b"))
        writer.put_server(server(1, name="a"))
    assert [s.name for s in store.list_servers()] == ["a", "b"]


def test_keypair_put_get_update_delete(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_keypair(KEY)
    assert store.get_keypair("key1") == KEY
    rotated = dataclasses.replace(KEY, public_key="ssh-ed25519 BBBB", fingerprint="cc:dd")
    with store.write() as writer:
        writer.put_keypair(rotated)
    assert store.list_keypairs() == [rotated]
    with store.write() as writer:
        writer.delete_keypair("key1")
    assert store.list_keypairs() == []
    with pytest.raises(NotFound):
        store.get_keypair("key1")


def test_deleting_a_server_releases_its_ports_and_drops_its_password(store: SqlStore) -> None:
    seed(store)
    assert store.set_password_once("srv-1", "secret")
    with store.write() as writer:
        writer.delete_server("srv-1")
    assert store.get_port("port-1").server_id is None
    with pytest.raises(NotFound):
        store.get_server("srv-1")
    with pytest.raises(NotFound):
        store.get_password("srv-1")
    with store.write() as writer:  # the id is free again, with no password attached
        writer.put_server(server(1))
    assert store.get_password("srv-1") == ""


def test_password_is_set_once_and_can_be_cleared(store: SqlStore) -> None:
    seed(store)
    assert store.get_password("srv-1") == ""
    assert store.set_password_once("srv-1", "first") is True
    assert store.set_password_once("srv-1", "second") is False
    assert store.get_password("srv-1") == "first"
    with store.write() as writer:
        writer.clear_password("srv-1")
    assert store.get_password("srv-1") == ""
    assert store.set_password_once("srv-1", "third") is True
    assert store.get_password("srv-1") == "third"


def test_password_for_an_unknown_server_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        store.set_password_once("nope", "x")
    with pytest.raises(NotFound), store.write() as writer:
        writer.clear_password("nope")


@pytest.mark.parametrize(
    ("getter", "key"),
    [
        ("get_network", "nope"),
        ("get_subnet", "nope"),
        ("get_router", "nope"),
        ("get_port", "nope"),
        ("get_server", "nope"),
        ("get_keypair", "nope"),
        ("get_password", "nope"),
        ("server_view", "nope"),
    ],
)
def test_reading_a_missing_entity_raises_not_found(store: SqlStore, getter: str, key: str) -> None:
    with pytest.raises(NotFound) as caught:
        getattr(store, getter)(key)
    assert caught.value.key == key


@pytest.mark.parametrize("delete", ["network", "subnet", "router", "port", "server", "keypair"])
def test_deleting_a_missing_entity_raises_not_found(store: SqlStore, delete: str) -> None:
    with pytest.raises(NotFound), store.write() as writer:
        getattr(writer, f"delete_{delete}")("nope")


def test_an_id_wins_over_a_name_that_looks_like_it(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(Network("a", "b"))
        writer.put_network(Network("b", "c"))
    assert store.get_network("b") == Network("b", "c")
    assert store.get_network("c") == Network("b", "c")


def test_writer_reads_its_own_uncommitted_changes(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        assert writer.reader().get_network("net1") == NET
        assert store.list_networks() == []  # not yet committed
    assert store.list_networks() == [NET]


def test_an_exception_in_the_block_rolls_back_everything(store: SqlStore) -> None:
    seed(store)
    before = snapshot(store)

    def change_mind(writer: SqlWriter) -> None:
        raise RuntimeError("operator changed their mind")

    with pytest.raises(RuntimeError):
        in_one_transaction(
            store, lambda w: w.put_network(NET2), lambda w: w.delete_port("port-1"), change_mind
        )
    assert snapshot(store) == before


def test_a_transaction_that_changes_nothing_spends_no_revision(store: SqlStore) -> None:
    seed(store)
    before = store.revision()
    with store.write() as writer:
        writer.reader().list_servers()
    assert store.set_password_once("srv-1", "x")
    assert not store.set_password_once("srv-1", "y")
    assert store.revision() == before + 1


def test_subnet_of_the_same_cidr_on_another_network_is_separate(store: SqlStore) -> None:
    seed(store)
    other = Subnet("sub-2", "net-2", "10.0.0.0/24", 4)
    with store.write() as writer:
        writer.put_network(NET2)
        writer.put_subnet(other)
        writer.put_port(port(2, network_id="net-2", fixed_ips=(FixedIp("sub-2", "10.0.0.11"),)))
    assert [p.id for p in store.list_ports(network_id="net-2")] == ["port-2"]
    assert ROUTER in store.list_routers()
