from __future__ import annotations

import dataclasses
import multiprocessing
import threading

from tests.support import workers
from tests.support.inventory import KEY, NET, NET2, SUBNET, SUBNET6, port, seed, server

from cloudseed.model import Network, Router
from cloudseed.store import SqlStore
from cloudseed.store.protocol import Change, ChangeOp, EntityKind

NETWORK, SUBNET_KIND, ROUTER = EntityKind.NETWORK, EntityKind.SUBNET, EntityKind.ROUTER
PORT, SERVER, KEYPAIR = EntityKind.PORT, EntityKind.SERVER, EntityKind.KEYPAIR
PUT, DELETE, TOUCH = ChangeOp.PUT, ChangeOp.DELETE, ChangeOp.TOUCH


def _last_write(store: SqlStore) -> set[tuple[EntityKind, str, ChangeOp]]:
    revision = store.revision()
    found = [c for c in store.changes_since(revision - 1) if c.revision == revision]
    return {(c.kind, c.id, c.op) for c in found}


def _seed_two_servers(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_server(server(2))
        writer.put_port(port(2, "srv-2"))
        writer.put_server(server(3))  # no port: never touched by network changes


def test_one_transaction_is_one_revision_with_every_entity_once(store: SqlStore) -> None:
    seed(store)
    assert store.revision() == 1
    assert _last_write(store) == {
        (NETWORK, "net-1", PUT),
        (SUBNET_KIND, "sub-1", PUT),
        (ROUTER, "rtr-1", PUT),
        (KEYPAIR, "key1", PUT),
        (SERVER, "srv-1", PUT),
        (PORT, "port-1", PUT),
    }


def test_subnet_change_touches_servers_with_ports_on_its_network(store: SqlStore) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.put_subnet(dataclasses.replace(SUBNET, gateway_ip="10.0.0.254"))
    assert _last_write(store) == {
        (SUBNET_KIND, "sub-1", PUT),
        (SERVER, "srv-1", TOUCH),
        (SERVER, "srv-2", TOUCH),
    }


def test_network_change_touches_servers_with_ports_on_it(store: SqlStore) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.put_network(dataclasses.replace(NET, mtu=9000))
    assert _last_write(store) == {
        (NETWORK, "net-1", PUT),
        (SERVER, "srv-1", TOUCH),
        (SERVER, "srv-2", TOUCH),
    }


def test_moving_a_port_touches_old_and_new_owner_and_its_network_and_router(
    store: SqlStore,
) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.put_port(port(1, "srv-3"), move=True)
    assert _last_write(store) == {
        (PORT, "port-1", PUT),
        (SERVER, "srv-1", TOUCH),
        (SERVER, "srv-3", TOUCH),
        (NETWORK, "net-1", TOUCH),
        (ROUTER, "rtr-1", TOUCH),
    }


def test_deleting_a_port_touches_its_owner(store: SqlStore) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.delete_port("port-2")
    assert _last_write(store) == {
        (PORT, "port-2", DELETE),
        (SERVER, "srv-2", TOUCH),
        (NETWORK, "net-1", TOUCH),
        (ROUTER, "rtr-1", TOUCH),
    }


def test_keypair_change_touches_the_servers_that_use_it(store: SqlStore) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.put_keypair(dataclasses.replace(KEY, public_key="ssh-ed25519 NEW"))
    assert _last_write(store) == {(KEYPAIR, "key1", PUT), (SERVER, "srv-1", TOUCH)}


def test_password_set_and_clear_touch_the_server(store: SqlStore) -> None:
    seed(store)
    store.set_password_once("srv-1", "pw")
    assert _last_write(store) == {(SERVER, "srv-1", TOUCH)}
    with store.write() as writer:
        writer.clear_password("srv-1")
    assert _last_write(store) == {(SERVER, "srv-1", TOUCH)}


def test_router_change_records_the_router_and_touches_servers_behind_it(
    store: SqlStore,
) -> None:
    _seed_two_servers(store)
    with store.write() as writer:
        writer.put_router(Router("rtr-1", "router1", ()))
    assert _last_write(store) == {
        (ROUTER, "rtr-1", PUT),
        (SERVER, "srv-1", TOUCH),
        (SERVER, "srv-2", TOUCH),
    }
    with store.write() as writer:
        writer.delete_router("rtr-1")
    assert _last_write(store) == {(ROUTER, "rtr-1", DELETE)}


def test_moving_an_unused_subnet_touches_the_routers_on_it(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_subnet(SUBNET6)
        writer.put_router(Router("rtr-2", "router2", ("sub-6",)))
        writer.put_network(NET2)
    with store.write() as writer:
        writer.put_subnet(dataclasses.replace(SUBNET6, network_id="net-2"))
    assert _last_write(store) == {
        (SUBNET_KIND, "sub-6", PUT),
        (ROUTER, "rtr-2", TOUCH),
        (SERVER, "srv-1", TOUCH),
    }
    assert store.router_network_ids("rtr-2") == ["net-2"]


def test_deleting_a_server_records_its_released_ports(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.delete_server("srv-1")
    assert _last_write(store) == {
        (SERVER, "srv-1", DELETE),
        (PORT, "port-1", PUT),
        (NETWORK, "net-1", TOUCH),
        (ROUTER, "rtr-1", TOUCH),
    }


def test_put_then_delete_in_one_transaction_is_a_delete(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        writer.delete_network("net-1")
    assert _last_write(store) == {(NETWORK, "net-1", DELETE)}


def test_changes_since_never_splits_a_revision(store: SqlStore) -> None:
    seed(store)  # revision 1: six changes
    with store.write() as writer:
        writer.put_network(NET2)
    page = store.changes_since(0, limit=2)
    assert [c.revision for c in page] == [1] * 6
    assert store.changes_since(1, limit=1) == [Change(2, NETWORK, "net-2", PUT)]
    assert store.changes_since(2) == []


def test_follower_started_before_the_writes_sees_each_once_in_order(store: SqlStore) -> None:
    writes = 20
    seen: list[Change] = []
    start = store.revision()
    ready = threading.Event()

    def follow() -> None:
        last = start
        ready.set()
        while last < start + writes:
            for change in store.follow(last, timeout_seconds=5):
                seen.append(change)
                last = change.revision

    follower = threading.Thread(target=follow)
    follower.start()
    ready.wait()
    for n in range(writes):
        with store.write() as writer:
            writer.put_network(Network(f"net-{n}", f"net{n}"))
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert [(c.revision, c.id) for c in seen] == [
        (start + 1 + n, f"net-{n}") for n in range(writes)
    ]
    # A reader that starts after the writes reads the same history.
    assert list(store.changes_since(start)) == seen


def test_wait_for_change_returns_the_current_revision_when_nothing_happens(
    store: SqlStore,
) -> None:
    seed(store)
    assert store.wait_for_change(store.revision(), timeout_seconds=0.2) == 1
    assert store.wait_for_change(0, timeout_seconds=0) == 1
    assert list(store.follow(1, timeout_seconds=0.1)) == []


def test_wait_for_change_wakes_on_a_write_from_another_process(store: SqlStore) -> None:
    start = store.revision()
    context = multiprocessing.get_context("fork")
    go = context.Event()
    child = context.Process(target=workers.write_one_network, args=(store.url, go))
    child.start()
    try:
        go.set()
        woke_at = store.wait_for_change(start, timeout_seconds=60)
    finally:
        child.join(timeout=60)
    assert child.exitcode == 0
    assert woke_at == start + 1
    assert [c.id for c in store.changes_since(start)] == ["net-from-child"]
