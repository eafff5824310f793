"""Large transactions: past MIRROR_AFTER_PUTS the writer checks integrity in
memory and buffers inserts; every rule must hold exactly as before."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.inventory import in_one_transaction, port, seed, server, snapshot

from cloudseed.errors import Conflict
from cloudseed.model import FixedIp
from cloudseed.store import SqlStore
from cloudseed.store.bulk import MIRROR_AFTER_PUTS
from cloudseed.store.protocol import ChangeOp, EntityKind
from cloudseed.store.writer import SqlWriter

MANY = MIRROR_AFTER_PUTS + 8  # past the switch to mirrors


def _import_many(writer: SqlWriter, first: int = 100) -> None:
    for n in range(first, first + MANY):
        writer.put_server(server(n))
        writer.put_port(port(n, f"srv-{n}"))


def test_bulk_import_stores_every_server_and_port_in_one_revision(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        _import_many(writer)
    assert store.revision() == 2
    servers = {s.id: s for s in store.list_servers()}
    assert len(servers) == 1 + MANY
    assert sorted(s.ec2_id for s in servers.values()) == list(range(1, 2 + MANY))
    assert len(store.list_ports(network_id="net-1")) == 1 + MANY
    view = store.server_view(f"srv-{100 + MANY - 1}")
    assert [p.port.id for p in view.ports] == [f"port-{100 + MANY - 1}"]
    assert view.ports[0].routed
    feed = store.changes_since(1)
    assert {c.revision for c in feed} == {2}
    puts = {(c.kind, c.id) for c in feed if c.op is ChangeOp.PUT}
    assert len(puts) == 2 * MANY
    touches = {(c.kind, c.id) for c in feed if c.op is ChangeOp.TOUCH}
    assert touches == {(EntityKind.NETWORK, "net-1"), (EntityKind.ROUTER, "rtr-1")}


def test_ports_keep_creation_order_for_their_server(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        _import_many(writer)
        for n in (3, 2, 4):
            writer.put_port(port(1000 + n, "srv-100", ip=f"10.0.0.{240 + n}"))
    assert [p.id for p in store.list_ports(server_id="srv-100")] == [
        "port-100",
        "port-1003",
        "port-1002",
        "port-1004",
    ]


def _update_within_bulk(writer: SqlWriter) -> None:
    _import_many(writer)
    writer.put_port(port(1, "srv-100"), move=True)  # existed before: moves to a new server
    writer.put_port(port(101, None, ip="10.0.0.250"), move=True)  # created above: freed
    writer.put_server(server(102, name="renamed"))
    writer.delete_server("srv-103")
    writer.put_server(server(104, name="server103"))  # the freed name


def test_updates_after_the_switch_see_old_and_new_rows(store: SqlStore) -> None:
    seed(store)
    with store.write() as writer:
        _update_within_bulk(writer)
    assert store.get_port("port-1").server_id == "srv-100"
    moved = store.get_port("port-101")
    assert (moved.server_id, moved.fixed_ips) == (None, (FixedIp("sub-1", "10.0.0.250"),))
    assert store.get_server("renamed").id == "srv-102"
    assert store.get_server("server103").id == "srv-104"
    assert store.get_port("port-103").server_id is None
    ops = {(c.kind, c.id): c.op for c in store.changes_since(1)}
    assert ops[(EntityKind.SERVER, "srv-1")] is ChangeOp.TOUCH  # port-1's old owner
    assert ops[(EntityKind.SERVER, "srv-103")] is ChangeOp.DELETE


Action = Callable[[SqlWriter], object]

VIOLATIONS: dict[str, tuple[Action, str]] = {
    "name of a server created earlier in the transaction": (
        lambda w: w.put_server(server(999, name="server150")),
        "name",
    ),
    "name of a server stored before": (lambda w: w.put_server(server(999, name="server1")), "name"),
    "mac of a port created earlier in the transaction": (
        lambda w: w.put_port(port(999, mac_address=port(150).mac_address, ip="10.0.0.251")),
        "mac_address",
    ),
    "mac of a port stored before": (
        lambda w: w.put_port(port(999, mac_address=port(1).mac_address, ip="10.0.0.251")),
        "mac_address",
    ),
    "ip of a port created earlier in the transaction": (
        lambda w: w.put_port(port(999, ip=port(150).fixed_ips[0].ip_address)),
        "fixed_ips",
    ),
    "ip of a port stored before": (lambda w: w.put_port(port(999, ip="10.0.0.11")), "fixed_ips"),
    "explicit ec2 id taken": (lambda w: w.put_server(server(999, ec2_id=5)), "ec2_id"),
}


@pytest.mark.parametrize("case", VIOLATIONS)
def test_integrity_holds_after_the_switch_to_mirrors(store: SqlStore, case: str) -> None:
    action, field = VIOLATIONS[case]
    seed(store)
    before = snapshot(store)
    with pytest.raises(Conflict) as caught:
        in_one_transaction(store, _import_many, action)
    assert caught.value.field == field
    assert snapshot(store) == before
