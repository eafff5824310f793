"""The address map on a real store (SQLite and PostgreSQL): Neutron's resolution rules,
and a map kept from the feed answering exactly what a map built afresh answers."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace

import pytest
from tests.support import world
from tests.support.world import LLA_A, MAC_A, SAME_IP, V6_A

from cloudseed.agent import addressmap
from cloudseed.agent.addressmap import AddressMap, digest
from cloudseed.agent.resolve import Identity, Scope, ScopeKind
from cloudseed.errors import Conflict, NotFound
from cloudseed.model import FixedIp, Network, Port, Router, Subnet
from cloudseed.store import SqlStore
from cloudseed.store.protocol import Writer

RTR_A, RTR_B = Scope(ScopeKind.ROUTER, "rtr-a"), Scope(ScopeKind.ROUTER, "rtr-b")
NET_A, NET_B, NET_C = (Scope(ScopeKind.NETWORK, f"net-{n}") for n in "abc")


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def server_of(m: AddressMap, scope: Scope, address: str = SAME_IP) -> str | None:
    found = m.resolve(scope, ip(address))
    return found.server_id if isinstance(found, Identity) else None


def follow(m: AddressMap, store: SqlStore) -> None:
    """What the agent's follower does: every change since the map's revision, digested, applied."""
    changes = store.changes_since(m.revision)
    if changes:
        m.apply(digest(changes, store), changes[-1].revision)


def test_same_ip_on_two_routers_and_three_networks_resolves_per_tenant(store: SqlStore) -> None:
    world.build(store)
    m = AddressMap.build(store)
    assert m.revision == store.revision()
    assert [server_of(m, s) for s in (RTR_A, RTR_B, NET_A, NET_B, NET_C)] == [
        "srv-a", "srv-b", "srv-a", "srv-b", "srv-c"]
    found = m.resolve(RTR_B, ip(SAME_IP))
    assert found == Identity("srv-b", "proj-b", "port-b")


def test_ipv6_and_link_local_by_mac_stay_in_their_scope(store: SqlStore) -> None:
    world.build(store)
    m = AddressMap.build(store)
    assert server_of(m, RTR_A, V6_A) == "srv-a"
    assert server_of(m, NET_A, LLA_A) == "srv-a"  # EUI-64 of MAC_A
    assert server_of(m, NET_B, LLA_A) is None  # that MAC is not on net-b
    assert server_of(m, RTR_B, V6_A) is None


@pytest.mark.parametrize(
    ("scope", "address", "kind", "text"),
    [
        (Scope(ScopeKind.ROUTER, "rtr-nope"), SAME_IP, "router", "router rtr-nope has no networks"),
        (RTR_A, "10.0.0.99", "port", "no port with IP 10.0.0.99 on the networks of router rtr-a"),
        (NET_B, "10.0.0.99", "port", "no port with IP 10.0.0.99 on network net-b"),
        (Scope(ScopeKind.NETWORK, "net-nope"), SAME_IP, "port",
         "no port with IP 10.0.0.5 on network net-nope"),
    ],
)
def test_not_found_answers_name_the_address_and_where(
    store: SqlStore, scope: Scope, address: str, kind: str, text: str
) -> None:
    world.build(store)
    found = AddressMap.build(store).resolve(scope, ip(address))
    assert isinstance(found, NotFound)
    assert (found.kind, found.message) == (kind, text)


def test_two_ports_behind_one_router_is_ambiguous_and_unbound_port_is_not_a_server(
    store: SqlStore,
) -> None:
    world.build(store)
    with store.write() as w:  # rtr-a now also reaches net-b, which holds 10.0.0.5 too
        w.put_router(Router("rtr-a", "router-a", ("sub-a", "sub-a6", "sub-b")))
        w.put_port(Port("port-free", "net-c", "fa:16:3e:00:00:ff", (FixedIp("sub-c", "10.0.0.9"),)))
    m = AddressMap.build(store)
    found = m.resolve(RTR_A, ip(SAME_IP))
    assert isinstance(found, NotFound)
    assert found.message == "2 ports with IP 10.0.0.5 on the networks of router rtr-a"
    found = m.resolve(NET_C, ip("10.0.0.9"))
    assert isinstance(found, NotFound)
    assert found.message == ("port port-free with IP 10.0.0.9 on network net-c "
                             "is not attached to a server")


def test_feed_moves_adds_deletes_and_reattaches(store: SqlStore) -> None:
    world.build(store)
    m = AddressMap.build(store)
    with store.write() as w:  # port-a to a new server; port-b deleted; a new port on net-b
        w.put_server(world.server("d", "proj-d"))
        w.put_port(replace(store.get_port("port-a"), server_id="srv-d"), move=True)
        w.delete_port("port-b")
        w.put_port(Port("port-e", "net-b", "fa:16:3e:00:00:0e", (FixedIp("sub-b", SAME_IP),),
                        server_id="srv-c"))
    follow(m, store)
    assert server_of(m, RTR_A) == "srv-d"
    assert server_of(m, RTR_A, V6_A) == "srv-d"
    assert server_of(m, RTR_B) == "srv-c"
    with store.write() as w:  # rtr-b detaches; net-c gets a router
        w.put_router(Router("rtr-b", "router-b", ()))
        w.put_router(Router("rtr-c", "router-c", ("sub-c",)))
    follow(m, store)
    assert server_of(m, RTR_B) is None
    assert server_of(m, Scope(ScopeKind.ROUTER, "rtr-c")) == "srv-c"
    with store.write() as w:
        w.put_server(replace(store.get_server("srv-d"), project_id="proj-z"))
    follow(m, store)
    assert m.resolve(RTR_A, ip(SAME_IP)) == Identity("srv-d", "proj-z", "port-a")
    with store.write() as w:
        w.delete_server("srv-d")  # releases port-a
    follow(m, store)
    found = m.resolve(RTR_A, ip(SAME_IP))
    assert isinstance(found, NotFound)
    assert found.kind == "server"


def test_address_and_mac_handed_between_ports_in_one_transaction(store: SqlStore) -> None:
    world.build(store)
    m = AddressMap.build(store)
    with store.write() as w:  # port-a gives up 10.0.0.5 and its MAC; port-n takes both
        w.put_port(replace(store.get_port("port-a"), mac_address="fa:16:3e:00:00:aa",
                           fixed_ips=(FixedIp("sub-a", "10.0.0.6"),)))
        w.put_port(Port("port-n", "net-a", MAC_A, (FixedIp("sub-a", SAME_IP),),
                        server_id="srv-c"))
    follow(m, store)
    assert server_of(m, RTR_A) == "srv-c"
    assert server_of(m, RTR_A, "10.0.0.6") == "srv-a"
    assert server_of(m, NET_A, LLA_A) == "srv-c"
    assert server_of(m, RTR_A, V6_A) is None  # port-a dropped its IPv6 address


def test_ids_that_are_not_uuids_and_ids_whose_keys_clash(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every id gets the same table key: ports must still be told apart by id.
    monkeypatch.setattr(addressmap, "id_key", lambda _text: 7)
    world.build(store, uuids=True)
    m = AddressMap.build(store)
    assert server_of(m, RTR_A) == world.UUIDS["a"]
    assert server_of(m, RTR_B) == world.UUIDS["b"]
    with store.write() as w:
        w.delete_port("port-a")
    follow(m, store)
    assert server_of(m, RTR_A) is None
    assert server_of(m, RTR_B) == world.UUIDS["b"]
    assert len(m) == 2


def test_map_kept_from_the_feed_answers_as_a_map_built_afresh(store: SqlStore) -> None:
    """Random writes; after each batch the followed map and a fresh build agree on every
    (scope, address) asked, answers and "not found" texts alike."""
    rng = random.Random(17)
    with store.write() as w:
        for n in range(3):
            w.put_network(Network(f"n{n}", f"n{n}"))
            w.put_subnet(Subnet(f"s{n}", f"n{n}", "10.1.0.0/24", 4))
            w.put_subnet(Subnet(f"s{n}v6", f"n{n}", "fd00:1::/64", 6))
        for s in range(4):
            w.put_server(world.server(str(s), f"proj-{s % 2}"))
    m = AddressMap.build(store)
    hosts = [f"10.1.0.{h}" for h in range(10, 16)] + ["fd00:1::10", "fd00:1::11"]
    scopes = [Scope(ScopeKind.NETWORK, f"n{n}") for n in range(4)]
    scopes += [Scope(ScopeKind.ROUTER, f"r{r}") for r in range(3)]
    found = 0
    for _ in range(40):
        with store.write() as w:
            for _ in range(rng.randint(1, 4)):
                _random_write(w, store, rng, hosts)
        follow(m, store)
        fresh = AddressMap.build(store)
        for scope in scopes:
            for h in hosts:
                assert _seen(m, scope, h) == _seen(fresh, scope, h), (scope, h)
        assert len(m) == len(fresh)
        found += sum(isinstance(m.resolve(s, ip(h)), Identity) for s in scopes for h in hosts)
    assert found > 100  # the walk reached many bound ports, not only "not found"


def _seen(m: AddressMap, scope: Scope, address: str) -> object:
    found = m.resolve(scope, ip(address))
    return (found.kind, found.message) if isinstance(found, NotFound) else found


def _random_write(w: Writer, store: SqlStore, rng: random.Random, hosts: list[str]) -> None:
    n = rng.randrange(3)
    port_id = f"p{rng.randrange(8)}"
    choice = rng.randrange(5)
    try:
        if choice <= 1:
            addresses = rng.sample(hosts, rng.randint(0, 2))
            fixed = tuple(FixedIp(f"s{n}v6" if ":" in a else f"s{n}", a) for a in addresses)
            server = rng.choice([None, "srv-0", "srv-1", "srv-2", "srv-3"])
            mac = f"fa:16:3e:00:01:{rng.randrange(12):02x}"
            w.put_port(Port(port_id, f"n{n}", mac, fixed, server_id=server), move=True)
        elif choice == 2:
            w.delete_port(port_id)
        elif choice == 3:
            subnets = tuple(rng.sample([f"s{i}" for i in range(3)], rng.randint(0, 2)))
            w.put_router(Router(f"r{rng.randrange(3)}", f"r{rng.randrange(100)}", subnets))
        else:
            sid = f"srv-{rng.randrange(4)}"
            w.put_server(replace(w.reader().get_server(sid), project_id=f"proj-{rng.randrange(5)}"))
    except (Conflict, NotFound):
        pass  # a clash with what is stored: the writer refused it, nothing written
