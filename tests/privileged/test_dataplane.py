"""The data plane in real namespaces: DHCP, option 121, REDIRECT, proxies, repair, teardown.

These use the stand-in proxy (``standin_proxy.py``) so they check the data
plane alone; ``test_real_chain.py`` runs the real proxy → agent → API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.netns import rule_handle
from tests.support.processes import wait_until

from cloudseed.dataplane import dhcp, firewall, netns, supervise
from cloudseed.dataplane.plan import Names
from cloudseed.dataplane.runner import Runner

from .conftest import Lab

pytestmark = pytest.mark.privileged

META = "http://169.254.169.254/openstack/latest/meta_data.json"


def build_two_networks(lab: Lab) -> dict[str, str]:
    router = lab.router("r1")
    routed = lab.network("routed", "10.20.0.0/24", "10.20.0.1", router=router)
    isolated = lab.network("isolated", "10.10.0.0/24", "10.10.0.1")
    vm_routed = lab.server("vm-routed", routed, "10.20.0.5", "fa:16:3e:20:00:05")
    vm_isolated = lab.server("vm-isolated", isolated, "10.10.0.5", "fa:16:3e:10:00:05")
    return {"router": router, "routed_net": routed[0], "isolated_net": isolated[0],
            "vm_routed": vm_routed, "vm_isolated": vm_isolated}


def fetch_json(lab: Lab, guest: str, url: str = META) -> dict[str, str]:
    status, body = lab.fetch(guest, url)
    assert status == 200, body
    result: dict[str, str] = json.loads(body)
    return result


def test_routed_and_isolated_guests_get_dhcp_and_reach_their_own_proxy(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.host().sync()
    lab.plug(ids["vm_routed"], "routed")
    lab.plug(ids["vm_isolated"], "isolated")

    routed = lab.dhcp(lab.guest_name("routed"))
    assert routed["addresses"] == ["10.20.0.5/24"]
    # Option 121 carried both routes; option 3 alone would not give the /32.
    assert routed["routes"]["169.254.169.254"] == "10.20.0.1"
    assert routed["routes"]["default"] == "10.20.0.1"

    isolated = lab.dhcp(lab.guest_name("isolated"))
    assert isolated["addresses"] == ["10.10.0.5/24"]
    assert isolated["routes"]["169.254.169.254"] == "10.10.0.254"
    assert isolated["routes"]["default"] == "10.10.0.1"

    seen = wait_until(lambda: lab.fetch(lab.guest_name("routed"), META)[0] == 200, 10.0)
    assert seen
    answer = fetch_json(lab, lab.guest_name("routed"))
    assert answer["router_id"] == ids["router"]
    assert answer["client"] == "10.20.0.5"
    answer = fetch_json(lab, lab.guest_name("isolated"))
    assert answer["network_id"] == ids["isolated_net"]
    assert answer["client"] == "10.10.0.5"


def test_only_redirected_traffic_reaches_the_router_proxy_port(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.host().sync()
    lab.plug(ids["vm_routed"], "routed")
    guest = lab.guest_name("routed")
    lab.dhcp(guest)
    assert wait_until(lambda: lab.fetch(guest, META)[0] == 200, 10.0)
    status, _ = lab.fetch(guest, "http://10.20.0.1:9697/", timeout=2)
    assert status == 0  # dropped: 9697 is reachable only through the REDIRECT
    counters = firewall.rule_counters(Runner(), Names(lab.root).router_namespace(ids["router"]))
    assert counters[firewall.REDIRECT_COMMENT].packets > 0
    assert counters[firewall.DROP_COMMENT].packets > 0


def test_second_sync_changes_nothing_and_says_so(lab: Lab) -> None:
    build_two_networks(lab)
    first = lab.cli("dataplane", "sync")
    assert "changes applied" in first.stdout
    second = lab.cli("dataplane", "sync")
    assert "nothing to do" in second.stdout
    status = lab.cli("dataplane", "status", "-f", "json")
    assert json.loads(status.stdout)["in_sync"] is True


def test_sync_repairs_deleted_rule_address_and_killed_processes(lab: Lab) -> None:
    ids = build_two_networks(lab)
    host = lab.host()
    host.sync()
    names = Names(lab.root)
    runner = Runner()
    router_ns = names.router_namespace(ids["router"])
    dhcp_ns = names.dhcp_namespace(ids["isolated_net"])
    # Damage: a deleted rule, a deleted address, a killed proxy (and its supervisor).
    handle = rule_handle(router_ns, firewall.REDIRECT_COMMENT)
    runner.run(["nft", "delete", "rule", "inet", firewall.TABLE_NAME, "prerouting", "handle",
                str(handle)], netns=router_ns)
    leg = next(leg for leg in host.desired().legs if leg.namespace == dhcp_ns)
    runner.ip("addr", "del", "169.254.169.254/32", "dev", leg.inner, netns=dhcp_ns)
    procs = supervise.observe(host.context.state_dir)
    proxy = procs[f"proxy-router-{ids['router']}"]
    assert proxy.supervisor_pid
    assert proxy.child_pid
    runner.signal(proxy.supervisor_pid, signal.SIGKILL)
    runner.signal(proxy.child_pid, signal.SIGKILL)

    status = lab.cli("dataplane", "status", check=False)
    assert status.returncode == 1
    assert "metadata-redirect" not in status.stdout  # names the object, not the rule text
    repaired = lab.cli("dataplane", "sync")
    assert f"firewall {router_ns}" in repaired.stdout
    assert "add address 169.254.169.254/32" in repaired.stdout
    assert f"process proxy-router-{ids['router']}: start" in repaired.stdout
    assert firewall.REDIRECT_COMMENT in firewall.rule_counters(runner, router_ns)
    assert "nothing to do" in lab.cli("dataplane", "sync").stdout


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_a_namespace_deleted_behind_our_back_gets_its_processes_again(lab: Lab) -> None:
    """`ip netns del` leaves the namespace alive through the processes in it (dnsmasq,
    the proxy), serving nobody; sync makes the namespace again and must start them
    in it, not leave the old ones holding the dead one."""
    ids = build_two_networks(lab)
    host = lab.host()
    host.sync()
    dhcp_ns = Names(lab.root).dhcp_namespace(ids["isolated_net"])
    name = f"dnsmasq-{ids['isolated_net']}"
    old = supervise.observe(host.context.state_dir)[name]
    assert old.child_pid is not None
    Runner().run(["ip", "netns", "delete", dhcp_ns])
    assert os.path.exists(f"/proc/{old.child_pid}/ns/net")  # alive in the unnamed namespace

    repaired = lab.cli("dataplane", "sync")
    assert f"process {name}: stop: its namespace was deleted" in repaired.stdout
    assert wait_until(lambda: not os.path.exists(f"/proc/{old.child_pid}"), 10.0)
    new = supervise.observe(host.context.state_dir)[name]
    assert new.child_pid is not None
    assert new.child_pid != old.child_pid
    assert _netns_inode(f"/proc/{new.child_pid}/ns/net") == _netns_inode(f"/run/netns/{dhcp_ns}")
    # The guest on that network is served again: DHCP and its metadata.
    lab.plug(ids["vm_isolated"], "isolated")
    guest = lab.guest_name("isolated")
    assert lab.dhcp(guest)["addresses"] == ["10.10.0.5/24"]
    assert wait_until(lambda: lab.fetch(guest, META)[0] == 200, 10.0)
    assert "nothing to do" in lab.cli("dataplane", "sync").stdout


def test_supervisor_restarts_a_crashed_proxy(lab: Lab) -> None:
    ids = build_two_networks(lab)
    host = lab.host()
    host.sync()
    name = f"proxy-network-{ids['isolated_net']}"
    before = supervise.observe(host.context.state_dir)[name]
    assert before.child_pid
    Runner().signal(before.child_pid, signal.SIGKILL)
    assert wait_until(lambda: (supervise.observe(host.context.state_dir)[name].child_pid
                             not in (None, before.child_pid)))
    assert not host.sync()  # the supervisor repaired it; sync has nothing to do


def test_teardown_leaves_no_namespace_link_rule_file_or_process(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.cli("dataplane", "sync")
    lab.cli("dataplane", "plug", ids["vm_routed"], "--netns", lab.guest_name("routed"))
    state_dir = lab.settings().dataplane.state_dir
    out = lab.cli("dataplane", "teardown")
    assert "teardown complete" in out.stdout
    runner = Runner()
    assert not [n for n in runner.namespaces() if n.startswith(lab.root)]
    assert lab.root not in runner.namespaces()
    assert not _processes_mentioning(lab.root)
    assert not _processes_mentioning(state_dir)
    assert not Path(state_dir).exists()
    assert not Path(f"/etc/netns/{lab.guest_name('routed')}").exists()


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


def test_sync_watch_serves_a_port_registered_later_by_reloading_dnsmasq(lab: Lab) -> None:
    net = lab.network("isolated", "10.10.0.0/24", "10.10.0.1")
    lab.cli("dataplane", "sync")
    state_dir = lab.settings().dataplane.state_dir
    dnsmasq = f"dnsmasq-{net[0]}"
    before = supervise.observe(state_dir)[dnsmasq].child_pid
    env = {**os.environ, **lab.env()}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "cloudseed.cli.main", "dataplane", "sync",
         "--watch"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server = lab.server("late", net, "10.10.0.9", "fa:16:3e:10:00:09")
        hosts = Path(state_dir, "dhcp", net[0], "host")
        assert wait_until(lambda: "fa:16:3e:10:00:09" in hosts.read_text(), 20)
        lab.plug(server, "late")
        assert lab.dhcp(lab.guest_name("late"))["addresses"] == ["10.10.0.9/24"]
        assert supervise.observe(state_dir)[dnsmasq].child_pid == before  # reloaded, not restarted
    finally:
        watcher.terminate()
        output = watcher.communicate(timeout=20)[0]
    assert "reload (SIGHUP)" in output


def test_dhcp_works_with_the_data_dir_locked_down_and_dnsmasq_logs_to_a_file(
    lab: Lab,
) -> None:
    """A 0700 data dir (secrets at rest): dnsmasq still reads its files and says so."""
    data_dir = lab.tmp / "data"
    data_dir.mkdir(mode=0o700)
    data_dir.chmod(0o700)
    state_dir = data_dir / "dataplane"
    lab.overrides["dataplane.state_dir"] = str(state_dir)
    ids = build_two_networks(lab)
    lab.host().sync()
    lab.plug(ids["vm_isolated"], "isolated")
    lease = lab.dhcp(lab.guest_name("isolated"))
    assert lease["addresses"] == ["10.10.0.5/24"]
    log = (state_dir / "dhcp" / ids["isolated_net"] / dhcp.LOG_NAME).read_text()
    assert f"read {state_dir}/dhcp/{ids['isolated_net']}/host" in log
    assert "cannot read" not in log
    # The DHCP exchange itself is in dnsmasq's log, not lost on a discarded stderr.
    assert "DHCPACK" in log
    assert "10.10.0.5" in log
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"


def test_doctor_names_a_dnsmasq_that_cannot_read_its_files(lab: Lab) -> None:
    """dnsmasq dropped to a user that cannot enter the 0700 data dir: doctor must say so."""
    data_dir = lab.tmp / "data"
    data_dir.mkdir(mode=0o700)
    lab.overrides["dataplane.state_dir"] = str(data_dir / "dataplane")
    lab.overrides["dataplane.dnsmasq_user"] = "nobody"
    ids = build_two_networks(lab)
    lab.host().sync()
    result = lab.cli("doctor", ids["vm_isolated"], "-f", "json", check=False)
    assert result.returncode == 1
    dhcp_hop = next(h for h in json.loads(result.stdout)["hops"] if h["name"] == "dhcp")
    assert dhcp_hop["ok"] is False
    assert "cannot read" in dhcp_hop["detail"]
    assert "Permission denied" in dhcp_hop["detail"]
    assert "dataplane.dnsmasq_user" in dhcp_hop["fix"]


def probe_through_tap(lab: Lab, tap: str, mac: str) -> dict[str, object]:
    """What a VM behind ``tap`` is offered: frames through the tap's fd, as QEMU sends them."""
    result = Runner().query([sys.executable, "-m", "cloudseed.dataplane.dhcp_probe", "--tap",
                             tap, "--client-mac", mac], netns=lab.root)
    offer: dict[str, object] = json.loads(result.stdout)
    return offer


def test_plug_creates_a_tap_and_the_vm_behind_it_is_offered_its_address(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.host().sync()
    tap = f"{lab.root}t"
    lab.cli("dataplane", "plug", ids["vm_isolated"], "--tap", tap, "--create")
    link = netns.observe_links(Runner(), lab.root)[tap]
    assert link.master == Names.bridge(ids["isolated_net"])
    assert link.mac == "fe:16:3e:10:00:05"  # never the guest's own MAC
    offer = probe_through_tap(lab, tap, "fa:16:3e:10:00:05")
    assert offer["offered"] == "10.10.0.5"
    assert "169.254.169.254/32 via 10.10.0.254" in offer["routes"]  # type: ignore[operator]
    # A NIC with another MAC is offered nothing (what doctor's mac hop explains).
    assert probe_through_tap(lab, tap, "52:54:00:00:00:01")["offered"] is None
    lab.cli("dataplane", "unplug", ids["vm_isolated"])
    assert tap not in netns.observe_links(Runner(), lab.root)


def test_plug_takes_an_existing_tap_from_another_namespace(lab: Lab) -> None:
    ids = build_two_networks(lab)
    lab.host().sync()
    hypervisor = lab.guest_name("hv")
    runner = Runner()
    runner.add_namespace(hypervisor)
    runner.ip("tuntap", "add", "dev", "vmtap0", "mode", "tap", netns=hypervisor)
    missing = lab.cli("dataplane", "plug", ids["vm_routed"], "--tap", "vmtap0", check=False)
    assert missing.returncode != 0
    assert "--tap-netns" in missing.stderr
    lab.cli("dataplane", "plug", ids["vm_routed"], "--tap", "vmtap0", "--tap-netns", hypervisor)
    assert "vmtap0" not in netns.observe_links(runner, hypervisor)
    link = netns.observe_links(runner, lab.root)["vmtap0"]
    assert link.master == Names.bridge(ids["routed_net"])
    assert probe_through_tap(lab, "vmtap0", "fa:16:3e:20:00:05")["offered"] == "10.20.0.5"
