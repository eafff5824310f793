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
    Chain,
    boot,
    build,
    guests_under_load,
    overlapping_tenants,
    own_metadata,
    read_their_own,
    spoofing_gets_only_their_own,
)

from cloudseed.dataplane import supervise
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS, Names
from cloudseed.dataplane.runner import Runner

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
    tenants = overlapping_tenants(lab)
    v4 = tenants.v4
    lab.cli("dataplane", "sync")
    # One process serves all five namespaces.
    proxies = proxy_processes(lab)
    assert list(proxies) == [SHARED_FRONT_PROCESS]
    front_pid = proxies[SHARED_FRONT_PROCESS].child_pid
    assert front_pid is not None
    read_their_own(lab, tenants)
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
    tenants = overlapping_tenants(lab, v6=False)
    lab.cli("dataplane", "sync")
    spoofing_gets_only_their_own(lab, tenants)


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
