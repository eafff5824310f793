"""Observation over netlink tells the truth: what ``ip`` and ``nft`` print, and drift made by hand.

``sync`` reads every namespace over netlink and libnftables from one thread
(``dataplane/netlink.py``) instead of starting ``ip`` and ``nft`` per
namespace. These tests compare that reading with the tools' own output on real
namespaces, and damage a synced host by hand — a deleted address, a flushed or
deleted table, a deleted namespace, a link set down, a changed MAC, a stray
address — and check that ``sync`` names each repair, makes it, and then finds
nothing left to do.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cloudseed.dataplane import firewall, netlink
from cloudseed.dataplane.plan import Names
from cloudseed.dataplane.runner import Runner

from .conftest import Lab
from .test_dataplane import build_two_networks

pytestmark = pytest.mark.privileged


def _links_from_ip(runner: Runner, namespace: str) -> dict[str, netlink.LinkState]:
    """The oracle: ``ip -j -d addr show``, read as the reconciler used to read it."""
    links: dict[str, netlink.LinkState] = {}
    for entry in runner.ip_json("-d", "addr", "show", netns=namespace):
        info: list[dict[str, Any]] = entry.get("addr_info", [])
        links[entry["ifname"]] = netlink.LinkState(
            name=entry["ifname"],
            kind=str(entry.get("linkinfo", {}).get("info_kind", "")),
            master=str(entry.get("master", "")),
            mac=str(entry.get("address", "")).lower(),
            is_up="UP" in entry.get("flags", []),
            mtu=int(entry.get("mtu", 0)),
            addresses=frozenset(
                f"{a['local']}/{a['prefixlen']}" for a in info
                if not netlink.is_autoconf(a.get("family") == "inet6", a["local"])),
        )
    return links


def _namespaces(lab: Lab) -> list[str]:
    names = Names(lab.root)
    return [lab.root, *sorted(n for n in Runner().namespaces() if names.is_ours(n))]


def test_netlink_reading_equals_ip_and_nft_output(lab: Lab) -> None:
    ids = build_two_networks(lab)
    v6 = lab.network("v6", "fd00:6::/64", "fd00:6::1", router=ids["router"])
    lab.server("vm-v6", v6, "fd00:6::5", "fa:16:3e:60:00:05")
    host = lab.host()
    host.sync()
    runner = Runner()
    router_ns = Names(lab.root).router_namespace(ids["router"])
    # Shapes the plan never makes: a peer address, a down link, an IPv6 /128.
    runner.ip("link", "add", "odd0", "mtu", "1400", "type", "veth", "peer", "name", "odd1",
              netns=router_ns)
    runner.ip("addr", "add", "192.0.2.1", "peer", "192.0.2.2/32", "dev", "odd0",
              netns=router_ns)
    runner.ip("addr", "add", "2001:db8::7/128", "dev", "odd0", "nodad", netns=router_ns)
    namespaces = _namespaces(lab)
    assert set(namespaces[1:]) == {n.name for n in host.desired().namespaces}

    reads = runner.read_namespaces(namespaces, firewall.TABLE, {router_ns})

    for namespace in namespaces:
        assert reads[namespace].links == _links_from_ip(runner, namespace), namespace
    assert reads[router_ns].links["odd0"].addresses == {"192.0.2.1/32", "2001:db8::7/128"}
    assert not reads[router_ns].links["odd0"].is_up
    assert "fe80::a9fe:a9fe/64" in next(
        link.addresses for name, link in reads[router_ns].links.items() if name.startswith("qr-")
        and any(":" in a for a in link.addresses))
    assert reads[router_ns].table == runner.nft_text(
        "list", "table", *firewall.TABLE, netns=router_ns)
    assert reads[router_ns].table is not None
    assert all(reads[n].table is None for n in namespaces if n != router_ns)  # not asked


def test_missing_namespace_and_table_read_as_absent(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.host().sync()
    dhcp_ns = Names(lab.root).dhcp_namespace(ids["isolated_net"])
    gone = f"{lab.root}-never-{uuid.uuid4().hex[:4]}"
    reads = Runner().read_namespaces([gone, "", dhcp_ns], firewall.TABLE, {dhcp_ns, gone})
    assert gone not in reads
    assert "lo" in reads[""].links  # "" is our own namespace
    assert reads[dhcp_ns].table is None  # a DHCP namespace holds no table
    assert "lo" in reads[dhcp_ns].links


def _repairs(lab: Lab) -> list[str]:
    """What sync did, as ``subject: description`` lines; then sync must find nothing."""
    host = lab.host()
    done = [f"{a.subject}: {a.description}" for a in host.sync()]
    assert host.pending()[1] == []
    return done


def test_sync_repairs_drift_made_by_hand(lab: Lab) -> None:
    ids = build_two_networks(lab)
    host = lab.host()
    host.sync()
    names = Names(lab.root)
    runner = Runner()
    router_ns = names.router_namespace(ids["router"])
    dhcp_ns = names.dhcp_namespace(ids["isolated_net"])
    legs = {leg.namespace: leg for leg in host.desired().legs}

    runner.run(["nft", "flush", "table", *firewall.TABLE], netns=router_ns)
    runner.ip("addr", "del", "169.254.169.254/32", "dev", legs[dhcp_ns].inner, netns=dhcp_ns)
    runner.ip("addr", "add", "10.99.0.9/24", "dev", legs[dhcp_ns].inner, netns=dhcp_ns)
    runner.ip("link", "set", legs[router_ns].inner, "down", netns=router_ns)
    runner.ip("link", "set", legs[router_ns].inner, "address", "02:00:00:00:00:01",
              netns=router_ns)
    done = _repairs(lab)
    assert f"firewall {router_ns}: replace (rules changed or damaged) table inet " \
           f"{firewall.TABLE_NAME}" in done
    dhcp_leg = f"leg {dhcp_ns}/{legs[dhcp_ns].inner}"
    assert f"{dhcp_leg}: add address 169.254.169.254/32" in done
    assert f"{dhcp_leg}: delete address 10.99.0.9/24" in done
    router_leg = f"leg {router_ns}/{legs[router_ns].inner}"
    assert f"{router_leg}: set up" in done
    assert f"{router_leg}: set MAC {legs[router_ns].mac}" in done
    assert firewall.REDIRECT_COMMENT in firewall.rule_counters(runner, router_ns)

    runner.run(["nft", "delete", "table", *firewall.TABLE], netns=router_ns)
    assert _repairs(lab) == [f"firewall {router_ns}: create table inet {firewall.TABLE_NAME}"]


def test_sync_recreates_a_namespace_deleted_by_hand(lab: Lab) -> None:
    ids = build_two_networks(lab)
    host = lab.host()
    host.sync()
    runner = Runner()
    router_ns = Names(lab.root).router_namespace(ids["router"])
    runner.kill_namespace_processes(router_ns)  # a live process would keep it alive
    runner.delete_namespace(router_ns)
    assert router_ns not in runner.namespaces()

    done = _repairs(lab)
    assert f"namespace {router_ns}: create" in done
    assert any(line.startswith(f"firewall {router_ns}: create") for line in done)
    assert any(line.startswith(f"leg {router_ns}/") for line in done)
    reads = runner.read_namespaces([router_ns], firewall.TABLE, {router_ns})
    assert reads[router_ns].table is not None
    assert reads[router_ns].links == _links_from_ip(runner, router_ns)
