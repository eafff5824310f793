"""The co-located shared front in real namespaces: one process resolves and answers.

``dataplane.proxy_implementation = "shared"`` with ``dataplane.front_answers =
"co-located"``: ``dataplane sync`` starts one ``cloudseed proxy --listeners-file
... --answers co-located``, and no agent and no metadata API run to relay to
(the agent's socket does not even exist). Guests behind two routers and on
isolated networks, with the same IPv4 and IPv6 addresses, read their own
metadata from it; forged identity headers and smuggling change nothing; changes
in the store reach guests; the per-host ready map kept by ``cloudseed api``'s
renderer is what it answers from. The token's hop limit in co-located mode is
in tests/privileged/test_hop_limit.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.processes import stop_group
from tests.support.proxy import unix_request
from tests.support.real_chain import (
    META,
    Chain,
    boot,
    connects_tcp,
    logs,
    overlapping_tenants,
    own_metadata,
    read_their_own,
    spoofing_gets_only_their_own,
    wait,
)

from cloudseed.dataplane import supervise
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS, front_files
from cloudseed.ready.store import ReadyMap, map_path

from .conftest import Lab

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture
def colocated(lab: Lab) -> Lab:
    lab.overrides.pop("dataplane.cloudseed_command")  # the real `cloudseed proxy`
    lab.overrides.update({
        "dataplane.proxy_implementation": "shared",
        "dataplane.front_answers": "co-located",
        "store.data_dir": str(lab.tmp / "data"),
        "api.ready_map_dir": str(lab.tmp / "ready"),
        "api.admin_host": "",
    })
    return lab


def front_pid(lab: Lab) -> int:
    states = supervise.observe(lab.settings().dataplane.state_dir)
    assert [name for name in states if name.startswith("proxy-")] == [SHARED_FRONT_PROCESS]
    pid = states[SHARED_FRONT_PROCESS].child_pid
    assert pid is not None
    return pid


def front_metrics(lab: Lab) -> str:
    _, status = front_files(lab.settings().dataplane.state_dir)
    code, _, body = unix_request(status, "GET", "/metrics")
    assert code == 200, body
    return body.decode()


def counter(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def fetch_until(lab: Lab, guest: str, check: object, url: str = META) -> tuple[int, str]:
    """The guest's answer once ``check(status, body)`` holds (bounded: 15 s)."""
    assert callable(check)
    wait(lambda: check(*lab.fetch(guest, url)), 15)
    return lab.fetch(guest, url)


def test_overlapping_tenants_read_their_own_v4_and_v6_from_the_ready_map(
    colocated: Lab,
) -> None:
    lab = colocated
    tenants = overlapping_tenants(lab)
    # `cloudseed api` on the same host keeps the per-host ready map (its renderer);
    # guests never reach it: nothing relays to it.
    port = free_port()
    log = open(lab.tmp / "api.log", "ab")  # noqa: SIM115 - kept by the child
    api = subprocess.Popen([sys.executable, "-m", "cloudseed.cli.main", "api", "--host",
                            "127.0.0.1", "--port", str(port), "--workers", "1", "--mode",
                            "direct"], env={**os.environ, **lab.env()},
                           stdout=log, stderr=log, start_new_session=True)
    log.close()
    try:
        assert wait(lambda: connects_tcp(port), 30), (lab.tmp / "api.log").read_text()
        settings = lab.settings()
        ready_dir = map_path(Path(settings.api.ready_map_dir), lab.store.store_id())

        def map_current() -> bool:
            ready = ReadyMap.reader(ready_dir)
            if ready is None:
                return False
            try:
                return ready.built_from()[1] >= lab.store.revision()
            finally:
                ready.close()

        assert wait(map_current, 30), (lab.tmp / "api.log").read_text()[-3000:]
        lab.cli("dataplane", "sync")
        pid = front_pid(lab)
        assert not Path(settings.agent.socket_path).exists()  # no agent: no hop to one
        read_their_own(lab, tenants)
        metrics = front_metrics(lab)
        # Each server's first read came from the ready map, not from a store read and render.
        hits = counter(metrics, 'cloudseed_api_ready_map_total{outcome="hit"}')
        assert hits >= len(tenants.v4) + len(tenants.v6), metrics
        assert "nothing to do" in lab.cli("dataplane", "sync").stdout
        assert front_pid(lab) == pid
    finally:
        stop_group(api)


def test_forged_headers_and_smuggling_get_only_the_guests_own_metadata(colocated: Lab) -> None:
    lab = colocated
    tenants = overlapping_tenants(lab, v6=False)
    lab.cli("dataplane", "sync")
    front_pid(lab)
    spoofing_gets_only_their_own(lab, tenants)
    removed = counter(front_metrics(lab), "cloudseed_proxy_identity_headers_removed_total")
    assert removed >= 2 * 3 * 8, removed


def test_store_changes_reach_guests_without_a_restart(colocated: Lab) -> None:
    lab = colocated
    net_a = lab.network("a", "10.30.0.0/24", "10.30.0.1", router=lab.router("ra"))
    net_c = lab.network("c", "10.30.0.0/24", "10.30.0.1")
    vm_a = lab.server("vm-a", net_a, "10.30.0.7", "fa:16:3e:30:00:0a", project="tenant-a")
    vm_c = lab.server("vm-c", net_c, "10.30.0.7", "fa:16:3e:30:00:0c", project="tenant-c")
    lab.cli("dataplane", "sync")
    pid = front_pid(lab)
    guest_a = boot(lab, vm_a, "a")
    guest_c = boot(lab, vm_c, "c")
    assert own_metadata(lab, guest_a)["name"] == "vm-a"
    # A document change (the metadata app's side).
    server = lab.store.get_server(vm_a)
    with lab.store.write() as w:
        w.put_server(dataclasses.replace(server, name="vm-a-renamed"))
    status, body = fetch_until(lab, guest_a, lambda s, b: s == 200 and "vm-a-renamed" in b)
    assert json.loads(body)["name"] == "vm-a-renamed", (status, body[:300], logs(lab))
    # A new port on a network already served (the address map's side, from the feed):
    # sync gives dnsmasq its lease and leaves the front's listeners as they are.
    vm_new = lab.server("vm-new", net_a, "10.30.0.8", "fa:16:3e:30:00:1a", project="tenant-a")
    lab.cli("dataplane", "sync")
    assert own_metadata(lab, boot(lab, vm_new, "new"))["uuid"] == vm_new
    # A deleted server: its guest is answered 404 on the same address, the other tenant
    # on the same address is not affected.
    with lab.store.write() as w:
        w.delete_server(vm_c)
    status, body = fetch_until(lab, guest_c, lambda s, b: s == 404)
    assert status == 404, (status, body[:300])
    assert own_metadata(lab, guest_a)["uuid"] == vm_a
    assert front_pid(lab) == pid  # nothing restarted meanwhile


def test_switching_a_relaying_front_to_colocated_keeps_guests_served(chain: Chain) -> None:
    lab = chain.lab
    lab.overrides["dataplane.proxy_implementation"] = "shared"
    tenants = overlapping_tenants(lab, v6=False)
    lab.cli("dataplane", "sync")
    guests = {name: boot(lab, server, name) for name, server in tenants.v4.items()}
    for name, guest in guests.items():
        assert own_metadata(lab, guest)["uuid"] == tenants.v4[name]
    relaying = front_pid(lab)
    lab.overrides.update({"dataplane.front_answers": "co-located",
                          "store.data_dir": str(lab.tmp / "data"),
                          "api.ready_map_dir": str(lab.tmp / "ready")})
    actions = lab.cli("dataplane", "sync").stdout
    # Swapped on the listeners its supervisor keeps: no gap for the guests.
    assert "process proxy-shared: replace on its open sockets" in actions, actions
    state = supervise.observe(lab.settings().dataplane.state_dir)[SHARED_FRONT_PROCESS]
    assert state.argv[-2:] == ("--answers", "co-located")
    assert wait(lambda: front_pid(lab) != relaying, 15)
    # Nothing behind the front any more: the guests are answered all the same.
    chain.stop("agent")
    chain.stop("api")
    for name, guest in guests.items():
        assert own_metadata(lab, guest)["uuid"] == tenants.v4[name]
    assert "nothing to do" in lab.cli("dataplane", "sync").stdout
