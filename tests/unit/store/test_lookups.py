from __future__ import annotations

import dataclasses
import threading

from tests.support.inventory import (
    FULL_SERVER,
    KEY,
    NET,
    NET2,
    SUBNET,
    SUBNET2,
    SUBNET6,
    port,
    seed,
    server,
)

from cloudseed.model import FixedIp, PortView, Router
from cloudseed.store import SqlStore


def test_server_view_holds_everything_to_render_one_server(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_subnet(SUBNET6)
        writer.put_network(NET2)
        writer.put_subnet(SUBNET2)
        created = writer.put_server(FULL_SERVER)
        writer.put_port(
            port(
                5,
                "srv-9",
                fixed_ips=(FixedIp("sub-1", "10.0.0.50"), FixedIp("sub-6", "fd00::50")),
            )
        )
        writer.put_port(
            port(6, "srv-9", network_id="net-2", fixed_ips=(FixedIp("sub-2", "10.0.0.60"),))
        )
    store.set_password_once("srv-9", "sekrit")
    view = store.server_view("srv-9")
    assert view.server == created
    assert view.revision == store.revision()
    assert view.keypair == KEY
    assert view.password == "sekrit"
    assert view.ports == (
        PortView(store.get_port("port-5"), NET, (SUBNET, SUBNET6), routed=True),
        PortView(store.get_port("port-6"), NET2, (SUBNET2,), routed=False),
    )
    assert view.first_ipv4 == "10.0.0.50"


def test_server_view_of_a_bare_server(store: SqlStore) -> None:
    with store.write() as writer:
        created = writer.put_server(server(1))
    view = store.server_view("srv-1")
    assert (view.server, view.keypair, view.ports, view.password) == (created, None, (), "")


def test_ports_with_ip_finds_the_holder_on_the_given_networks_only(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_network(NET2)
        writer.put_subnet(SUBNET2)
        writer.put_port(port(2, network_id="net-2", fixed_ips=(FixedIp("sub-2", "10.0.0.11"),)))
    assert [p.id for p in store.ports_with_ip(["net-1"], "10.0.0.11")] == ["port-1"]
    assert [p.id for p in store.ports_with_ip(["net-2"], "10.0.0.11")] == ["port-2"]
    assert [p.id for p in store.ports_with_ip(["net-1", "net-2"], "10.0.0.11")] == [
        "port-1",
        "port-2",
    ]
    assert store.ports_with_ip(["net-1"], "10.0.0.99") == []
    assert store.ports_with_ip([], "10.0.0.11") == []
    assert store.ports_with_ip(["net-1"], "10.0.0.11")[0] == store.get_port("port-1")


def test_ports_with_mac_ignores_case_and_other_networks(store: SqlStore) -> None:
    seed(store)
    mac = port(1).mac_address
    assert [p.id for p in store.ports_with_mac(["net-1"], mac.upper())] == ["port-1"]
    assert store.ports_with_mac(["net-2"], mac) == []


def test_router_network_ids_follow_the_attached_subnets(store: SqlStore) -> None:
    seed(store)
    assert store.router_network_ids("rtr-1") == ["net-1"]
    with store.write() as writer:
        writer.put_network(NET2)
        writer.put_subnet(SUBNET2)
        writer.put_subnet(SUBNET6)
        writer.put_router(Router("rtr-1", "router1", ("sub-1", "sub-6", "sub-2")))
    assert store.router_network_ids("rtr-1") == ["net-1", "net-2"]
    assert store.router_network_ids("no-such-router") == []


def test_server_id_by_ip_needs_exactly_one_owner(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_server(server(2))
        writer.put_port(port(2, "srv-2", floating_ip="203.0.113.9"))
        writer.put_port(port(3, "srv-1", ip="10.0.0.77", floating_ip="203.0.113.10"))
        writer.put_port(port(4, ip="10.0.0.88"))  # unowned
        writer.put_network(NET2)
        writer.put_subnet(SUBNET2)
        writer.put_port(
            port(5, "srv-2", network_id="net-2", fixed_ips=(FixedIp("sub-2", "10.0.0.11"),))
        )
    assert store.server_id_by_ip("203.0.113.9") == "srv-2"
    assert store.server_id_by_ip("10.0.0.77") == "srv-1"
    assert store.server_id_by_ip("203.0.113.10") == "srv-1"
    assert store.server_id_by_ip("10.0.0.88") is None
    assert store.server_id_by_ip("10.0.0.11") is None  # srv-1 on net1, srv-2 on net2
    assert store.server_id_by_ip("192.0.2.1") is None


def test_server_id_by_ip_is_not_confused_by_one_owner_twice(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        writer.put_port(port(1, "srv-1", floating_ip="10.0.0.11"))
    assert store.server_id_by_ip("10.0.0.11") == "srv-1"


def test_server_view_reads_one_snapshot_while_writers_change_it(store: SqlStore) -> None:
    # Each write changes the server's metadata and its network's MTU together;
    # a view mixing two revisions would see them disagree.
    seed(store)
    stop = threading.Event()

    def rewrite() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with store.write() as writer:
                writer.put_network(dataclasses.replace(NET, mtu=1000 + n))
                writer.put_server(server(1, key_name="key1", metadata={"n": str(n)}))

    writer_thread = threading.Thread(target=rewrite)
    writer_thread.start()
    try:
        views = [store.server_view("srv-1") for _ in range(150)]
    finally:
        stop.set()
        writer_thread.join(timeout=60)
    for view in views:
        n = int(view.server.metadata.get("n", "0"))
        expected_mtu = 1000 + n if n else NET.mtu
        assert view.ports[0].network.mtu == expected_mtu
    assert len({view.revision for view in views}) > 1  # the writer really ran meanwhile
