"""The shared front in real namespaces: one process, a listener in every namespace.

``dataplane.proxy_implementation = "shared"``: guests behind two routers and
on isolated networks, all with the same IPv4 (and IPv6) address, read their
own metadata through one ``cloudseed proxy --listeners-file`` process that
holds a listener in each router and DHCP namespace; spoofed identity headers
and a smuggling attempt from inside a guest get nothing but the guest's own
data; a namespace added under guest load refuses no request anywhere and
restarts nothing.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from tests.support.processes import alive
from tests.support.real_chain import (
    META,
    META6,
    SPOOF,
    Chain,
    boot,
    build,
    guests_under_load,
    in_guest,
    own_metadata,
)

from cloudseed.dataplane import supervise
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS, Names
from cloudseed.dataplane.runner import Runner
from cloudseed.model import Ipv6Mode

from .conftest import Lab

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

def shared(lab: Lab) -> None:
    lab.overrides["dataplane.proxy_implementation"] = "shared"


def proxy_processes(lab: Lab) -> dict[str, supervise.ProcessState]:
    states = supervise.observe(lab.settings().dataplane.state_dir)
    return {name: state for name, state in states.items() if name.startswith("proxy-")}


def test_overlapping_tenants_behind_routers_and_isolated_read_their_own_v4_and_v6(
    chain: Chain,
) -> None:
    lab = chain.lab
    shared(lab)
    net_a = lab.network("a", "10.30.0.0/24", "10.30.0.1", router=lab.router("ra"))
    net_b = lab.network("b", "10.30.0.0/24", "10.30.0.1", router=lab.router("rb"))
    net_c = lab.network("c", "10.30.0.0/24", "10.30.0.1")  # isolated: its DHCP namespace
    stateful = Ipv6Mode.DHCPV6_STATEFUL
    net_6r = lab.network("r6", "fd00:99::/64", "fd00:99::1", router=lab.router("r6"),
                         ipv6_mode=stateful)
    net_6i = lab.network("i6", "fd00:99::/64", "fd00:99::1", ipv6_mode=stateful)
    v4 = {name: lab.server(f"vm-{name}", net, "10.30.0.7", f"fa:16:3e:30:00:0{i}",
                           project=f"tenant-{name}")
          for i, (name, net) in enumerate((("a", net_a), ("b", net_b), ("c", net_c)))}
    v6 = {name: lab.server(f"vm-{name}", net, "fd00:99::5", f"fa:16:3e:99:00:0{i}",
                           project=f"tenant-{name}")
          for i, (name, net) in enumerate((("6r", net_6r), ("6i", net_6i)))}
    lab.cli("dataplane", "sync")
    # One process serves all five namespaces.
    proxies = proxy_processes(lab)
    assert list(proxies) == [SHARED_FRONT_PROCESS]
    front_pid = proxies[SHARED_FRONT_PROCESS].child_pid
    assert front_pid is not None
    for name, server in v4.items():
        assert own_metadata(lab, boot(lab, server, name))["uuid"] == server
    for name, server in v6.items():
        lab.plug(server, name)
        guest = lab.guest_name(name)
        assert lab.dhcp6(guest) == ("fd00:99::5",)
        assert own_metadata(lab, guest, META6)["uuid"] == server
    # doctor follows the shared front on both paths.
    for server in (v4["a"], v4["c"]):
        report = json.loads(lab.cli("doctor", server, "-f", "json").stdout)
        assert report["ok"] is True, report
        proxy_hop = next(h for h in report["hops"] if h["name"] == "proxy")
        assert SHARED_FRONT_PROCESS in proxy_hop["detail"]
    assert "nothing to do" in lab.cli("dataplane", "sync").stdout
    lab.cli("dataplane", "teardown")
    assert not proxy_processes(lab)
    assert not alive(front_pid)


def test_spoofing_and_smuggling_from_a_guest_get_only_its_own_metadata(chain: Chain) -> None:
    lab = chain.lab
    shared(lab)
    net_a = lab.network("a", "10.30.0.0/24", "10.30.0.1", router=lab.router("ra"))
    net_b = lab.network("b", "10.30.0.0/24", "10.30.0.1", router=lab.router("rb"))
    net_c = lab.network("c", "10.30.0.0/24", "10.30.0.1")
    vm_a = lab.server("vm-a", net_a, "10.30.0.7", "fa:16:3e:30:00:0a", project="tenant-a")
    vm_b = lab.server("vm-b", net_b, "10.30.0.7", "fa:16:3e:30:00:0b", project="tenant-b")
    vm_c = lab.server("vm-c", net_c, "10.30.0.7", "fa:16:3e:30:00:0c", project="tenant-c")
    lab.cli("dataplane", "sync")
    routers = {r.name: r.id for r in lab.store.list_routers()}
    for server, name, victim in ((vm_a, "a", vm_b), (vm_c, "c", vm_a)):
        guest = boot(lab, server, name)
        own_metadata(lab, guest)
        for victim_id in (victim, routers["rb"], net_b[0]):
            result = in_guest(guest, SPOOF, META, victim_id, "10.30.0.7")
            assert result["seen"] == [server] * 8, result
            raw = str(result["raw"])
            # The front refuses CL+TE outright (400, then close): nothing smuggled.
            assert raw.startswith("HTTP/1.1 400"), raw[:200]
            assert victim_id not in raw
            assert vm_b not in raw


def test_adding_namespaces_under_load_refuses_nothing_and_restarts_nothing(
    chain: Chain,
) -> None:
    lab = chain.lab
    shared(lab)
    ids = build(lab)
    lab.cli("dataplane", "sync")
    front_pid = proxy_processes(lab)[SHARED_FRONT_PROCESS].child_pid
    guests = [boot(lab, ids["vm_routed"], "routed"), boot(lab, ids["vm_isolated"], "isolated")]
    for guest in guests:
        own_metadata(lab, guest)
    with guests_under_load(guests, 20) as outcomes:
        # A new router namespace and a new isolated network (DHCP namespace), each a
        # reload of the front, while both guests keep asking.
        new_routed = lab.network("new-r", "10.40.0.0/24", "10.40.0.1", router=lab.router("rnew"))
        vm_new_r = lab.server("vm-new-r", new_routed, "10.40.0.5", "fa:16:3e:40:00:05")
        actions = lab.cli("dataplane", "sync").stdout
        assert "reload (SIGHUP)" in actions, actions
        assert own_metadata(lab, boot(lab, vm_new_r, "newr"))["uuid"] == vm_new_r
        new_iso = lab.network("new-i", "10.50.0.0/24", "10.50.0.1")
        vm_new_i = lab.server("vm-new-i", new_iso, "10.50.0.5", "fa:16:3e:50:00:05")
        lab.cli("dataplane", "sync")
        assert own_metadata(lab, boot(lab, vm_new_i, "newi"))["uuid"] == vm_new_i
        # And one leaves: the others do not notice.
        with lab.store.write() as w:
            w.delete_router(next(r.id for r in lab.store.list_routers() if r.name == "rnew"))
        lab.cli("dataplane", "sync")
    print(f"\nnamespaces added under load: {outcomes}")
    assert proxy_processes(lab)[SHARED_FRONT_PROCESS].child_pid == front_pid


def test_a_killed_front_and_a_recreated_namespace_are_served_again(chain: Chain) -> None:
    lab = chain.lab
    shared(lab)
    ids = build(lab)
    lab.cli("dataplane", "sync")
    guest = boot(lab, ids["vm_isolated"], "isolated")
    assert own_metadata(lab, guest)["uuid"] == ids["vm_isolated"]
    # SIGKILL: its supervisor starts it again on the listeners it kept.
    before = proxy_processes(lab)[SHARED_FRONT_PROCESS].child_pid
    assert before is not None
    os.kill(before, signal.SIGKILL)
    assert own_metadata(lab, guest)["uuid"] == ids["vm_isolated"]
    assert proxy_processes(lab)[SHARED_FRONT_PROCESS].child_pid not in (None, before)
    # The namespace deleted by hand and created again by sync: the listener file
    # does not change, but the front notices the name now means another namespace.
    namespace = Names(lab.root).dhcp_namespace(ids["isolated_net"])
    Runner().delete_namespace(namespace)
    lab.cli("dataplane", "sync")
    assert own_metadata(lab, guest)["uuid"] == ids["vm_isolated"]
