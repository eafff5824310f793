"""The whole path in real namespaces: guest → (REDIRECT | 169.254.169.254 on the DHCP
port) → ``cloudseed proxy`` → ``cloudseed agent`` → ``cloudseed api``.

Guests get their address from dnsmasq with a real dhclient, fetch their own
meta_data.json, and Debian's cloud-init ``MetadataReader`` crawls from inside
a guest namespace. ``cloudseed doctor`` must pinpoint each injected fault.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import sys
import threading
from collections.abc import Iterator

import pytest
from tests.support.guest import require_cloudinit, run_guest_python
from tests.support.netns import rule_handle
from tests.support.ports import free_port
from tests.support.real_chain import (
    META,
    META6,
    Chain,
    boot,
    build,
    guests_under_load,
    own_metadata,
)
from tests.support.real_chain import (
    wait as _wait,
)

from cloudseed.control.addressing import eui64_address
from cloudseed.dataplane import evidence, firewall, supervise
from cloudseed.dataplane.guest import wait_for_addresses
from cloudseed.dataplane.plan import Names
from cloudseed.dataplane.runner import Runner
from cloudseed.model import Ipv6Mode

from .conftest import Lab

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

CRAWL = """
import json, sys
from cloudinit.sources.helpers import openstack
reader = openstack.MetadataReader("http://169.254.169.254", timeout=5, retries=2)
result = reader.read_v2()
print(json.dumps({"uuid": result["metadata"]["uuid"],
                  "hostname": result["metadata"].get("hostname"),
                  "has_network_data": bool(result.get("networkdata"))}))
"""


def doctor(lab: Lab, server_id: str) -> dict[str, object]:
    result = lab.cli("doctor", server_id, "-f", "json", check=False)
    env_dump = result.stderr[-2000:]
    assert result.stdout, env_dump
    report: dict[str, object] = json.loads(result.stdout)
    assert (result.returncode == 0) == bool(report["ok"])
    return report


def hop(report: dict[str, object], name: str) -> dict[str, object]:
    hops = report["hops"]
    assert isinstance(hops, list)
    found: dict[str, object] = next(h for h in hops if h["name"] == name)
    return found


@pytest.mark.parametrize("proxy", ["builtin", "haproxy"])
def test_routed_and_isolated_guests_fetch_their_own_metadata(chain: Chain, proxy: str) -> None:
    lab = chain.lab
    lab.overrides["dataplane.proxy_implementation"] = proxy
    ids = build(lab)
    lab.cli("dataplane", "sync")
    routed = boot(lab, ids["vm_routed"], "routed")
    isolated = boot(lab, ids["vm_isolated"], "isolated")
    assert own_metadata(lab, routed)["uuid"] == ids["vm_routed"]
    assert own_metadata(lab, isolated)["uuid"] == ids["vm_isolated"]


def test_cloud_init_metadata_reader_crawls_from_inside_the_guest(chain: Chain) -> None:
    require_cloudinit()
    lab = chain.lab
    ids = build(lab)
    lab.cli("dataplane", "sync")
    guest = boot(lab, ids["vm_isolated"], "isolated")
    own_metadata(lab, guest)
    result = run_guest_python(CRAWL, netns=guest)
    assert result["uuid"] == ids["vm_isolated"]
    assert result["has_network_data"] is True


def test_two_routers_with_overlapping_guest_ips_each_serve_their_own_guest(
    chain: Chain,
) -> None:
    lab = chain.lab
    net_a = lab.network("a", "10.30.0.0/24", "10.30.0.1", router=lab.router("ra"))
    net_b = lab.network("b", "10.30.0.0/24", "10.30.0.1", router=lab.router("rb"))
    vm_a = lab.server("vm-a", net_a, "10.30.0.7", "fa:16:3e:30:00:0a")
    vm_b = lab.server("vm-b", net_b, "10.30.0.7", "fa:16:3e:30:00:0b")
    lab.cli("dataplane", "sync")
    guest_a = boot(lab, vm_a, "a")
    guest_b = boot(lab, vm_b, "b")
    assert own_metadata(lab, guest_a)["uuid"] == vm_a
    assert own_metadata(lab, guest_b)["uuid"] == vm_b


def test_doctor_passes_on_a_healthy_path_and_pinpoints_each_fault(chain: Chain) -> None:
    lab = chain.lab
    ids = build(lab)
    lab.cli("dataplane", "sync")
    server = ids["vm_routed"]
    guest = boot(lab, server, "routed")
    own_metadata(lab, guest)
    healthy = doctor(lab, server)
    assert healthy["ok"] is True, healthy
    assert "packets" in str(hop(healthy, "redirect")["detail"])

    runner = Runner()
    names = Names(lab.root)
    router_ns = names.router_namespace(ids["router"])
    state_dir = lab.settings().dataplane.state_dir

    # 1. missing REDIRECT rule
    handle = rule_handle(router_ns, firewall.REDIRECT_COMMENT)
    runner.run(["nft", "delete", "rule", "inet", firewall.TABLE_NAME, "prerouting", "handle",
                str(handle)], netns=router_ns)
    assert doctor(lab, server)["first_failure"] == "redirect"
    lab.cli("dataplane", "sync")

    # 2. proxy down (supervisor and child both gone)
    state = supervise.observe(state_dir)[f"proxy-router-{ids['router']}"]
    supervise.stop(runner, state, 2.0)
    assert doctor(lab, server)["first_failure"] == "proxy"
    lab.cli("dataplane", "sync")

    # 3. agent down
    chain.stop("agent")
    assert doctor(lab, server)["first_failure"] == "agent"
    chain.start("agent")

    # 4. API down
    chain.stop("api")
    report = doctor(lab, server)
    assert report["first_failure"] == "api"
    # The agent answers, but with the API down it cannot resolve: not judged, not failed.
    assert hop(report, "agent")["ok"] is None
    chain.start("api")

    assert doctor(lab, server)["ok"] is True

    # 5. an isolated guest without its option-121 route: 169.254.169.254 would
    # go to the default gateway, which has no metadata service.
    isolated = boot(lab, ids["vm_isolated"], "isolated")
    own_metadata(lab, isolated)
    assert doctor(lab, ids["vm_isolated"])["ok"] is True
    runner.ip("route", "del", "169.254.169.254/32", netns=isolated)
    report = doctor(lab, ids["vm_isolated"])
    assert report["first_failure"] == "route"
    assert "169.254.169.254/32 via 10.10.0.254" in str(hop(report, "route")["fix"])



def test_ipv6_only_guests_get_dhcpv6_and_read_metadata_behind_a_router_and_isolated(
    chain: Chain,
) -> None:
    """Two tenants, the same IPv6 address: one behind a router, one on an isolated network."""
    lab = chain.lab
    stateful = Ipv6Mode.DHCPV6_STATEFUL
    routed = lab.network("routed6", "fd00:99::/64", "fd00:99::1", router=lab.router("r6"),
                         ipv6_mode=stateful)
    isolated = lab.network("isolated6", "fd00:99::/64", "fd00:99::1", ipv6_mode=stateful)
    vm_a = lab.server("vm-a", routed, "fd00:99::5", "fa:16:3e:99:00:0a", project="tenant-a")
    vm_b = lab.server("vm-b", isolated, "fd00:99::5", "fa:16:3e:99:00:0b", project="tenant-b")
    lab.cli("dataplane", "sync")
    for server, name in ((vm_a, "a"), (vm_b, "b")):
        lab.plug(server, name)
        guest = lab.guest_name(name)
        # dhcpv6-stateful: M flag, no autonomous prefix, so the only global
        # address is the one DHCPv6 handed out.
        assert lab.dhcp6(guest) == ("fd00:99::5",)
        assert own_metadata(lab, guest, META6)["uuid"] == server
        # doctor walks the fe80::a9fe:a9fe path for an IPv6-only guest.
        report = doctor(lab, server)
        assert report["ok"] is True, report
        assert report["not_seen"] == []


def test_slaac_and_stateless_guests_configure_from_router_advertisements(
    chain: Chain,
) -> None:
    lab = chain.lab
    routed = lab.network("slaac6", "fd00:71::/64", "fd00:71::1", router=lab.router("r6"),
                         ipv6_mode=Ipv6Mode.SLAAC)
    isolated = lab.network("stateless6", "fd00:72::/64", "fd00:72::1",
                           ipv6_mode=Ipv6Mode.DHCPV6_STATELESS)
    guests = []
    for net, cidr, mac, name in ((routed, "fd00:71::/64", "fa:16:3e:71:00:0a", "slaac"),
                                 (isolated, "fd00:72::/64", "fa:16:3e:72:00:0b", "stateless")):
        address = eui64_address(ipaddress.ip_network(cidr), mac)
        guests.append((lab.server(f"vm-{name}", net, address, mac), name, address))
    lab.cli("dataplane", "sync")
    for server, name, address in guests:
        lab.plug(server, name)
        guest = lab.guest_name(name)
        # The kernel's own SLAAC (accept_ra, autoconf) from dnsmasq's advertisement.
        assert wait_for_addresses(guest, "global") == (address,)
        assert own_metadata(lab, guest, META6)["uuid"] == server


def test_doctor_after_serve_reads_the_generated_secret_and_exits_0(chain: Chain) -> None:
    """The README's flow: `serve` generates the shared secret; doctor must use it."""
    lab = chain.lab
    chain.stop("api")
    chain.stop("agent")
    data_dir = lab.tmp / "data"
    data_dir.mkdir(mode=0o700)
    lab.overrides.pop("shared_secret")
    lab.overrides.update({
        "store.data_dir": str(data_dir), "api.host": "127.0.0.1", "api.port": chain.api_port,
        "api.admin_host": "127.0.0.1", "api.admin_port": free_port(),
        "agent.metrics_host": "127.0.0.1", "agent.metrics_port": free_port(),
    })
    chain.serve()
    ids = build(lab)
    lab.cli("dataplane", "sync")
    server = ids["vm_routed"]
    guest = boot(lab, server, "routed")
    own_metadata(lab, guest)
    result = lab.cli("doctor", server)
    assert "every hop is healthy" in result.stdout
    report = doctor(lab, server)
    assert report["ok"] is True, report
    assert report["not_seen"] == []
    assert str(data_dir / "secrets" / "shared_secret") in str(hop(report, "signature")["detail"])
    assert "acknowledged 10.20.0.5" in str(hop(report, "lease")["detail"])

    # A health check answering anything but 200 is unhealthy.
    with _answering(400) as port:
        lab.overrides["agent.metrics_port"] = port
        report = doctor(lab, server)
        assert report["first_failure"] == "agent"
        assert "answered 400" in str(hop(report, "agent")["detail"])
    # No secret anywhere: doctor names the secret it lacks, not a "mismatch".
    (data_dir / "secrets" / "shared_secret").unlink()
    lab.overrides["agent.metrics_port"] = -1
    report = doctor(lab, server)
    assert report["first_failure"] == "signature"
    assert "has not generated" in str(hop(report, "signature")["detail"])


def test_doctor_says_what_it_cannot_see_of_a_guest_it_did_not_plug(chain: Chain) -> None:
    lab = chain.lab
    ids = build(lab)
    lab.cli("dataplane", "sync")
    server = ids["vm_isolated"]
    guest = external_guest(lab, ids["isolated_net"], "ext", "fa:16:3e:10:00:05")
    lab.dhcp(guest)
    assert _wait(lambda: lab.fetch(guest, META)[0] == 200, 15)
    Runner().ip("route", "del", "169.254.169.254/32", netns=guest)
    report = doctor(lab, server)
    text = lab.cli("doctor", server).stdout
    # Nothing it can see is broken, but it does not claim the unseen hops are healthy.
    assert report["ok"] is True, report
    not_seen = report["not_seen"]
    assert isinstance(not_seen, list)
    assert set(not_seen) == {"route", "guest"}
    assert "every hop is healthy" not in text
    assert "not seen: route, guest" in text
    assert hop(report, "mac")["ok"] is True
    assert hop(report, "lease")["ok"] is True


def test_doctor_names_a_mac_mismatch_with_its_fix(chain: Chain) -> None:
    lab = chain.lab
    ids = build(lab)
    lab.cli("dataplane", "sync")
    # A VM whose NIC has another MAC than its port: dnsmasq refuses it.
    guest = external_guest(lab, ids["isolated_net"], "ext", "52:54:00:12:34:56")
    asked = Runner().query([sys.executable, "-m", "cloudseed.dataplane.dhcp_probe",
                            "--interface", "eth0", "--client-mac", "52:54:00:12:34:56"],
                           netns=guest)
    assert json.loads(asked.stdout)["offered"] is None
    report = doctor(lab, ids["vm_isolated"])
    assert report["first_failure"] == "mac"
    assert "52:54:00:12:34:56" in str(hop(report, "mac")["detail"])
    assert "<mac address='fa:16:3e:10:00:05'/>" in str(hop(report, "mac")["fix"])
    # A plugged guest whose NIC changes its MAC: the bridge learns the new one.
    routed = boot(lab, ids["vm_routed"], "routed")
    assert doctor(lab, ids["vm_routed"])["ok"] is True
    runner = Runner()
    runner.ip("link", "set", "eth0", "address", "52:54:00:aa:bb:cc", netns=routed)
    bridge = Names.bridge(next(p.network_id for p in lab.store.list_ports(
        server_id=ids["vm_routed"])))

    def learned() -> bool:  # the guest has sent a frame from its new MAC
        runner.query(["ping", "-c", "1", "-W", "1", "10.20.0.1"], netns=routed)
        return "52:54:00:aa:bb:cc" in evidence.learned_macs(runner, lab.root, bridge)

    assert _wait(learned, 10)
    report = doctor(lab, ids["vm_routed"])
    assert report["first_failure"] == "mac", hop(report, "mac")
    assert "learned 52:54:00:aa:bb:cc" in str(hop(report, "mac")["detail"])


def external_guest(lab: Lab, network_id: str, name: str, mac: str) -> str:
    """A guest attached by hand (as libvirt would), not by `cloudseed dataplane plug`."""
    guest = lab.guest_name(name)
    runner = Runner()
    runner.add_namespace(guest)
    outer = f"{lab.root}{name}"[:15]
    runner.ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", guest,
              netns=lab.root)
    runner.ip("link", "set", "eth0", "address", mac, netns=guest)
    runner.ip("link", "set", outer, "master", Names.bridge(network_id), netns=lab.root)
    runner.ip("link", "set", outer, "up", netns=lab.root)
    runner.ip("link", "set", "eth0", "up", netns=guest)
    return guest


@contextlib.contextmanager
def _answering(status: int) -> Iterator[int]:
    """A real HTTP server on loopback that answers every GET with ``status``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_switching_and_resyncing_proxies_refuses_no_guest_request(chain: Chain) -> None:
    """built-in → haproxy → built-in by `dataplane sync`, and a re-sync, under guest load."""
    lab = chain.lab
    ids = build(lab)
    lab.cli("dataplane", "sync")
    guests = [boot(lab, ids["vm_routed"], "routed"), boot(lab, ids["vm_isolated"], "isolated")]
    for guest in guests:
        own_metadata(lab, guest)
    with guests_under_load(guests, 15) as outcomes:
        lab.overrides["dataplane.proxy_implementation"] = "haproxy"
        switched = lab.cli("dataplane", "sync").stdout
        assert switched.count("replace on its open sockets") == 2, switched
        lab.cli("dataplane", "sync")
        lab.overrides["dataplane.proxy_implementation"] = "builtin"
        back = lab.cli("dataplane", "sync").stdout
        assert back.count("replace on its open sockets") == 2, back
    print(f"\nproxy switches under load: {outcomes}")
