"""The shared front's listeners outlive it, in real namespaces.

Guests behind routers and on isolated networks, over IPv4 and IPv6, ask for
their own metadata in a loop while the front is SIGKILLed again and again:
no connection is refused (the front's supervisor kept a copy of every
namespace's listener; clients wait in its backlog until the next front
adopts it), the only failures are requests the killed front was serving at
that moment, and every answer is the guest's own. A namespace that is
removed, or deleted and created again, leaves no listener behind: neither the
front nor its supervisor keeps the dead namespace alive.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from tests.support.hammer import Client, hammering, kill, only_cut_in_flight
from tests.support.processes import wait_until
from tests.support.real_chain import Chain, boot, logs, own_metadata

from cloudseed.dataplane import supervise
from cloudseed.dataplane.desired import Names
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS
from cloudseed.dataplane.runner import Runner
from cloudseed.model import Ipv6Mode

from .conftest import Lab

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

PATH = "/openstack/latest/meta_data.json"
V4 = "169.254.169.254"
V6 = "fe80::a9fe:a9fe%eth0"
# Under the agent's per-guest rate limit (10/s).
PAUSE = 0.15


def front_pid(lab: Lab) -> int:
    state = supervise.observe(lab.settings().dataplane.state_dir).get(SHARED_FRONT_PROCESS)
    return state.child_pid or 0 if state is not None else 0


class HeldNamespace:
    """A handle on a namespace that outlives its name: what still listens in it on the
    front's port (dnsmasq, which sync does not move, may well still listen on 53)."""

    def __init__(self, name: str, port: int) -> None:
        self.fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        self.port = port

    def listeners(self) -> str:
        out = subprocess.run(["nsenter", f"--net=/proc/self/fd/{self.fd}", "ss", "-Hltn",
                              f"sport = :{self.port}"],
                             capture_output=True, text=True, pass_fds=(self.fd,), check=True)
        return out.stdout.strip()

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def held() -> Iterator[list[HeldNamespace]]:
    handles: list[HeldNamespace] = []
    yield handles
    for handle in handles:
        handle.close()


def test_killing_the_front_under_guest_load_refuses_nothing_v4_and_v6(
    chain: Chain, held: list[HeldNamespace],
) -> None:
    lab = chain.lab
    lab.overrides["dataplane.proxy_implementation"] = "shared"
    stateful = Ipv6Mode.DHCPV6_STATEFUL
    routed = lab.network("r4", "10.60.0.0/24", "10.60.0.1", router=lab.router("r4"))
    isolated = lab.network("i4", "10.61.0.0/24", "10.61.0.1")
    routed6 = lab.network("r6", "fd00:60::/64", "fd00:60::1", router=lab.router("r6"),
                          ipv6_mode=stateful)
    isolated6 = lab.network("i6", "fd00:61::/64", "fd00:61::1", ipv6_mode=stateful)
    servers = {
        "r4": lab.server("vm-r4", routed, "10.60.0.5", "fa:16:3e:60:00:04"),
        "i4": lab.server("vm-i4", isolated, "10.61.0.5", "fa:16:3e:61:00:04"),
        "r6": lab.server("vm-r6", routed6, "fd00:60::5", "fa:16:3e:60:00:06"),
        "i6": lab.server("vm-i6", isolated6, "fd00:61::5", "fa:16:3e:61:00:06"),
    }
    lab.cli("dataplane", "sync")
    clients = []
    for name in ("r4", "i4"):
        guest = boot(lab, servers[name], name)
        assert own_metadata(lab, guest)["uuid"] == servers[name]
        clients.append(Client(name, V4, 80, PATH, servers[name], netns=guest))
    for name in ("r6", "i6"):
        lab.plug(servers[name], name)
        guest = lab.guest_name(name)
        assert lab.dhcp6(guest)
        assert own_metadata(lab, guest, f"http://[{V6}]{PATH}")["uuid"] == servers[name]
        clients.append(Client(name, V6, 80, PATH, servers[name], netns=guest))
    kills = []
    with hammering(clients, pause=PAUSE) as run:
        for _ in range(4):
            kills.append(kill(front_pid(lab), lambda: front_pid(lab)))
            # Each guest answered again by the new front before the next kill.
            assert run.each_answered_again(times=3), logs(lab)
    cut = only_cut_in_flight(run.outcomes, kills)
    print(f"\n4 kills under guest load: {[(o.client, o.ok) for o in run.outcomes]}; "
          f"{cut} requests in flight cut; nothing refused")
    # A router removed: its namespace's listener is closed by the front and by the
    # supervisor (the namespace is gone, not kept alive by a held socket).
    names = Names(lab.root)
    router = next(r for r in lab.store.list_routers() if r.name == "r4")
    port = lab.settings().dataplane.router_proxy_port
    held.append(HeldNamespace(names.router_namespace(router.id), port))
    assert held[-1].listeners(), "the router's listener should be there before"
    with lab.store.write() as w:
        w.delete_router(router.id)
    lab.cli("dataplane", "sync")
    assert wait_until(lambda: held[-1].listeners() == "", 15), held[-1].listeners()
    # The others are still served, by the same front (removal is no restart).
    before = front_pid(lab)
    assert own_metadata(lab, lab.guest_name("i4"))["uuid"] == servers["i4"]
    assert front_pid(lab) == before


def test_a_recreated_namespace_gets_fresh_listeners_and_the_dead_one_none(
    chain: Chain, held: list[HeldNamespace],
) -> None:
    lab = chain.lab
    lab.overrides["dataplane.proxy_implementation"] = "shared"
    isolated = lab.network("i4", "10.62.0.0/24", "10.62.0.1")
    server = lab.server("vm-i4", isolated, "10.62.0.5", "fa:16:3e:62:00:04")
    lab.cli("dataplane", "sync")
    guest = boot(lab, server, "i4")
    assert own_metadata(lab, guest)["uuid"] == server
    namespace = Names(lab.root).dhcp_namespace(isolated[0])
    held.append(HeldNamespace(namespace, 80))
    assert held[-1].listeners()
    # Deleted by hand, created again by sync under the same name: the listener file
    # does not change, the namespace does. The old one must not stay alive.
    Runner().delete_namespace(namespace)
    lab.cli("dataplane", "sync")
    assert own_metadata(lab, guest)["uuid"] == server
    assert wait_until(lambda: held[-1].listeners() == "", 15), held[-1].listeners()
    # And a restart of the front adopts the new namespace's listener, not the old one's.
    kill(front_pid(lab), lambda: front_pid(lab))
    assert own_metadata(lab, guest)["uuid"] == server
    assert held[-1].listeners() == ""
