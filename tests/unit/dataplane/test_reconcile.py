"""The pure diff: what sync would do, given what the kernel and state directory hold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cloudseed.dataplane.netlink import LinkState
from cloudseed.dataplane.plan import (
    SHARED_FRONT_PROCESS,
    DesiredState,
    Inventory,
    PlanContext,
    plan,
)
from cloudseed.dataplane.reconcile import Context, Observed, TableRecord, diff
from cloudseed.dataplane.supervise import ProcessState
from cloudseed.model import FixedIp, Network, Port, Router, Subnet
from cloudseed.settings import ProxyImplementation

CTX = Context(state_dir="/state", root_netns="t1")


def desired() -> DesiredState:
    inventory = Inventory(
        networks=(Network("n1", "one"), Network("n2", "two")),
        subnets=(Subnet("s1", "n1", "10.1.0.0/24", 4, gateway_ip="10.1.0.1"),
                 Subnet("s2", "n2", "10.2.0.0/24", 4, gateway_ip="10.2.0.1")),
        routers=(Router("r1", "r", ("s2",)),),
        ports=(Port("p1", "n1", "fa:16:3e:00:00:01", (FixedIp("s1", "10.1.0.5"),)),),
    )
    return plan(inventory, PlanContext(state_dir="/state", root_netns="t1",
                                       cloudseed_command=("cloudseed",)))


def in_sync(state: DesiredState) -> Observed:
    """What the host looks like right after a successful sync."""
    root: dict[str, LinkState] = {
        b.name: LinkState(b.name, "bridge", "", "", True, b.mtu, frozenset())
        for b in state.bridges
    }
    ns_links: dict[str, dict[str, LinkState]] = {
        n.name: {"lo": LinkState("lo", "", "", "", True, 65536, frozenset())}
        for n in state.namespaces
    }
    for leg in state.legs:
        root[leg.outer] = LinkState(leg.outer, "veth", leg.bridge, "", True, leg.mtu, frozenset())
        ns_links[leg.namespace][leg.inner] = LinkState(
            leg.inner, "veth", "", leg.mac, True, leg.mtu, frozenset(leg.addresses))
    return Observed(
        namespaces=frozenset({"t1", *ns_links}),
        root_links=root,
        ns_links=ns_links,
        tables={t.namespace: "listing" for t in state.tables},
        table_records={t.namespace: TableRecord(t.script, "listing") for t in state.tables},
        files={f.path: f.content for f in state.files},
        processes={p.name: ProcessState(p.name, Path("/state/proc") / p.name, p.argv,
                                        p.namespace, 100, 101) for p in state.processes},
    )


def described(state: DesiredState, observed: Observed) -> list[str]:
    return [f"{a.subject}: {a.description}" for a in diff(state, observed, CTX)]


def test_nothing_to_do_when_the_host_matches() -> None:
    state = desired()
    assert described(state, in_sync(state)) == []


def test_empty_host_gets_everything_in_dependency_order() -> None:
    state = desired()
    empty = Observed(frozenset(), {}, {}, {}, {}, {}, {}, root_exists=False)
    actions = described(state, empty)
    kinds = [a.split(" ", 1)[0] for a in actions]
    assert actions[0] == "namespace t1: create the parent namespace"
    assert kinds.index("bridge") < kinds.index("leg") < kinds.index("firewall")
    assert kinds.index("file") < kinds.index("process")
    assert sum(a.endswith(": create") for a in actions) == len(state.namespaces)


def test_deleted_address_is_added_back_and_stray_address_removed() -> None:
    state = desired()
    observed = in_sync(state)
    leg = next(leg for leg in state.legs if "qdhcp" in leg.namespace and "n1" in leg.namespace)
    inner = observed.ns_links[leg.namespace][leg.inner]
    observed.ns_links[leg.namespace][leg.inner] = dataclasses.replace(
        inner, addresses=frozenset({"10.1.0.99/24"}))
    actions = described(state, observed)
    assert f"leg {leg.namespace}/{leg.inner}: add address 169.254.169.254/32" in actions
    assert f"leg {leg.namespace}/{leg.inner}: delete address 10.1.0.99/24" in actions


def test_damaged_rules_are_replaced() -> None:
    state = desired()
    observed = in_sync(state)
    namespace = state.tables[0].namespace
    observed.tables[namespace] = "listing without the redirect"
    assert described(state, observed) == [
        f"firewall {namespace}: replace (rules changed or damaged) table inet cloudseed_metadata"]


def test_dead_supervisor_is_restarted_and_changed_hosts_file_reloads_dnsmasq() -> None:
    state = desired()
    observed = in_sync(state)
    proxy = next(p for p in state.processes if p.name.startswith("proxy-router"))
    observed.processes[proxy.name] = dataclasses.replace(
        observed.processes[proxy.name], supervisor_pid=None, child_pid=None)
    hosts = next(f.path for f in state.files if f.path.endswith("/n1/host"))
    observed.files[hosts] = ""
    actions = described(state, observed)
    assert any(a.startswith(f"process {proxy.name}: start") for a in actions)
    assert f"file {hosts}: write" in actions
    assert "process dnsmasq-n1: reload (SIGHUP): files changed" in actions


def test_changed_command_line_stops_then_starts() -> None:
    state = desired()
    observed = in_sync(state)
    name = "dnsmasq-n1"
    observed.processes[name] = dataclasses.replace(observed.processes[name], argv=("old",))
    actions = described(state, observed)
    assert actions.index(f"process {name}: stop (command line changed)") < next(
        i for i, a in enumerate(actions) if a.startswith(f"process {name}: start"))


def test_a_front_whose_supervisor_keeps_no_sockets_is_started_again_with_one_that_does(
) -> None:
    inventory = Inventory(networks=(Network("n1", "one"),),
                          subnets=(Subnet("s1", "n1", "10.1.0.0/24", 4, gateway_ip="10.1.0.1"),))
    state = plan(inventory, PlanContext(state_dir="/state", root_netns="t1",
                                        proxy_implementation=ProxyImplementation.SHARED))
    front = next(p for p in state.processes if p.name == SHARED_FRONT_PROCESS)
    assert front.keep_sockets
    observed = in_sync(state)
    kept = dataclasses.replace(observed.processes[front.name], keep_sockets=True)
    observed.processes[front.name] = kept
    assert described(state, observed) == []
    # One started before supervisors kept the front's sockets (an upgrade): replaced.
    observed.processes[front.name] = dataclasses.replace(kept, keep_sockets=False)
    actions = described(state, observed)
    assert f"process {front.name}: stop (command line changed)" in actions
    assert any(a.startswith(f"process {front.name}: start") for a in actions)
    # Another command line for a front whose sockets are kept: swapped on them, no stop.
    observed.processes[front.name] = dataclasses.replace(kept, argv=("old",))
    actions = described(state, observed)
    assert [a.split(":")[1].strip()[:7] for a in actions if front.name in a] == ["replace"]


def test_stale_namespace_bridge_and_process_are_removed() -> None:
    state = desired()
    observed = in_sync(state)
    observed = dataclasses.replace(
        observed,
        namespaces=observed.namespaces | {"t1-qrouter-gone", "unrelated-ns"},
        root_links={**observed.root_links,
                    "csb-0000000000": LinkState("csb-0000000000", "bridge", "", "", True, 1500,
                                                frozenset()),
                    "eth0": LinkState("eth0", "", "", "", True, 1500, frozenset())},
        processes={**observed.processes,
                   "proxy-router-gone": ProcessState("proxy-router-gone", Path("/x"), ("p",),
                                                     "t1-qrouter-gone", 5, 6)},
    )
    actions = described(state, observed)
    assert "process proxy-router-gone: stop stale process" in actions
    assert "namespace t1-qrouter-gone: delete stale namespace" in actions
    assert "bridge csb-0000000000: delete stale bridge" in actions
    assert not any("unrelated-ns" in a or "eth0" in a for a in actions)
    assert actions.index("process proxy-router-gone: stop stale process") < actions.index(
        "namespace t1-qrouter-gone: delete stale namespace")
