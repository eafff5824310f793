"""The token PUT's reply leaves with the server's IMDS hop limit as its IP TTL.

Real namespaces, real processes, real routing: ``S`` serves (the built-in
proxy in front of the real agent and API — per namespace, or the shared front
listening inside S from outside it —, the co-located shared front answering
itself, or the API in direct mode), ``C1``
sits on S's own link (one hop), ``C2`` and ``C3`` sit behind the router
namespace ``R`` (two hops); over IPv4 and IPv6 (the hop limit). All three servers have hop limit 1 except C3's,
which has 2. The router drops the reply to C2, so C2 never gets its token
while C1 does, and C2's ordinary reads still work; C3, as far away as C2,
gets its token: the control that shows it is the option, not the route.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.cli import cloudseed_argv
from tests.support.netns import sweep_namespaces
from tests.support.ports import free_port
from tests.support.processes import stop_group

from cloudseed.model import FixedIp, ImdsOptions, Network, Port, Server, Subnet
from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
from cloudseed.proxy.relay import ProxyScope
from cloudseed.store import SqlStore, open_store

pytestmark = [pytest.mark.privileged]

SECRET = "hop-limit-secret"
PORT = 8080
# Client script run inside a guest namespace: a plain GET, a token PUT, a GET with the token.
CLIENT = """
import http.client, json, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = {}
# A plain read first: it also warms the API's cache, so the PUT below is
# answered at once and only the TTL can keep it from arriving.
c = http.client.HTTPConnection(host, port, timeout=timeout)
c.request("GET", "/latest/meta-data/instance-id")
r = c.getresponse()
out["plain"] = [r.status, r.read().decode()]
try:
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    r = c.getresponse()
    out["token_status"] = r.status
    out["token_headers"] = [k.lower() for k, _ in r.getheaders()]
    token = r.read().decode()
    c.request("GET", "/latest/meta-data/instance-id",
              headers={"X-aws-ec2-metadata-token": token})
    r = c.getresponse()
    out["with_token"] = [r.status, r.read().decode()]
except OSError as exc:
    out["token_error"] = type(exc).__name__
print(json.dumps(out))
"""


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)


@dataclass
class Topology:
    prefix: str
    tmp: Path
    store: SqlStore
    network_id: str = ""
    servers: dict[str, str] = field(default_factory=dict)  # client ns → server id
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def build(self) -> None:
        s, r, c1, c2, c3 = (self.ns(x) for x in ("s", "r", "c1", "c2", "c3"))
        for name in (s, r, c1, c2, c3):
            subprocess.run(["ip", "netns", "add", name], check=True)
            _ip("link", "set", "lo", "up", netns=name)
        p = self.prefix
        # S ↔ C1 (one link), S ↔ R ↔ C2 (routed).
        for a, b, a_ns, b_ns, a_ip, b_ip in (
            (f"{p}a", f"{p}b", s, c1, "10.77.1.1/24", "10.77.1.10/24"),
            (f"{p}c", f"{p}d", s, r, "10.77.2.1/24", "10.77.2.2/24"),
            (f"{p}e", f"{p}f", r, c2, "10.77.3.1/24", "10.77.3.10/24"),
            (f"{p}g", f"{p}h", r, c3, "10.77.4.1/24", "10.77.4.10/24"),
        ):
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", a_ns)
            _ip("link", "set", b, "netns", b_ns)
            _ip("addr", "add", a_ip, "dev", a, netns=a_ns)
            _ip("addr", "add", b_ip, "dev", b, netns=b_ns)
            # The same plan in IPv6: fd77:N:: for 10.77.N.0 (nodad: usable at once).
            for dev, dev_ns, ip4 in ((a, a_ns, a_ip), (b, b_ns, b_ip)):
                _ip("addr", "add", _v6(ip4) + "/64", "dev", dev, "nodad", netns=dev_ns)
            _ip("link", "set", a, "up", netns=a_ns)
            _ip("link", "set", b, "up", netns=b_ns)
        _ip("route", "add", "10.77.3.0/24", "via", "10.77.2.2", netns=s)
        _ip("route", "add", "10.77.4.0/24", "via", "10.77.2.2", netns=s)
        _ip("route", "add", "default", "via", "10.77.3.1", netns=c2)
        _ip("route", "add", "default", "via", "10.77.4.1", netns=c3)
        _ip("-6", "route", "add", "fd77:3::/64", "via", "fd77:2::2", netns=s)
        _ip("-6", "route", "add", "fd77:4::/64", "via", "fd77:2::2", netns=s)
        _ip("-6", "route", "add", "default", "via", "fd77:3::1", netns=c2)
        _ip("-6", "route", "add", "default", "via", "fd77:4::1", netns=c3)
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1"], check=True)
        self.network_id = str(uuid.uuid4())
        with self.store.write() as w:
            w.put_network(Network(self.network_id, "hops"))
            for n, client, hops in ((1, c1, 1), (3, c2, 1), (4, c3, 2)):
                subnet, ip, mac = str(uuid.uuid4()), f"10.77.{n}.10", f"fa:16:3e:00:00:0{n}"
                subnet6 = str(uuid.uuid4())
                w.put_subnet(Subnet(subnet, self.network_id, f"10.77.{n}.0/24", 4))
                w.put_subnet(Subnet(subnet6, self.network_id, f"fd77:{n}::/64", 6))
                server = w.put_server(Server(str(uuid.uuid4()), client, client, "proj-1",
                                             imds=ImdsOptions(hop_limit=hops)))
                w.put_port(Port(str(uuid.uuid4()), self.network_id, mac,
                                (FixedIp(subnet, ip), FixedIp(subnet6, _v6(ip))),
                                server_id=server.id))
                self.servers[client] = server.id

    def env(self) -> dict[str, str]:
        return {**os.environ, "CLOUDSEED_STORE_URL": f"sqlite:///{self.tmp / 'store.db'}",
                "CLOUDSEED_STORE_DATA_DIR": str(self.tmp / "data"),
                "CLOUDSEED_SHARED_SECRET": SECRET,
                "CLOUDSEED_API_ADMIN_HOST": "", "CLOUDSEED_AGENT_METRICS_PORT": "-1"}

    def start(self, *args: str, netns: str | None = None, ready: tuple[str, str]) -> None:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        log = open(self.tmp / f"{args[0]}.log", "ab")  # noqa: SIM115 - kept by the child
        self.processes.append(subprocess.Popen(
            [*prefix, *cloudseed_argv(), *args], env=self.env(), stdout=log, stderr=log,
            start_new_session=True))
        log.close()
        kind, where = ready
        deadline = time.monotonic() + 20
        while not _connects(kind, where, self.ns("s")):
            if time.monotonic() > deadline:
                raise AssertionError((self.tmp / f"{args[0]}.log").read_text()[-3000:])
            time.sleep(0.1)

    def client(self, name: str, host: str) -> dict[str, object]:
        done = subprocess.run(["ip", "netns", "exec", self.ns(name), sys.executable, "-c",
                               CLIENT, host, str(PORT), "8"],
                              capture_output=True, text=True, timeout=30, check=True)
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def stop(self) -> None:
        for process in self.processes:
            stop_group(process)
        self.processes.clear()


def _connects(kind: str, where: str, netns: str) -> bool:
    if kind == "tcp-host":
        try:
            socket.create_connection(("127.0.0.1", int(where)), timeout=0.5).close()
        except OSError:
            return False
        return True
    if kind == "unix":
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(where)
        except OSError:
            return False
        return True
    probe = f"import socket; socket.create_connection(({where!r}, {PORT}), timeout=0.5).close()"
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", probe],
                          capture_output=True, check=False).returncode == 0


@pytest.fixture
def topology(privileged: None, tmp_path: Path) -> Iterator[Topology]:
    prefix = f"hl{uuid.uuid4().hex[:6]}"
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    topo = Topology(prefix, tmp_path, store)
    try:
        topo.build()
        yield topo
    finally:
        topo.stop()
        sweep_namespaces(prefix)
        store.close()


def _v6(ip4: str) -> str:
    """fd77:N::H for 10.77.N.H (a prefix length, if any, is dropped)."""
    _, _, n, h = ip4.split("/", maxsplit=1)[0].split(".")
    return f"fd77:{n}::{h}"


def _check(topo: Topology, family: int = 4) -> None:
    def address(ip4: str) -> str:
        return ip4 if family == 4 else _v6(ip4)

    near = topo.client("c1", address("10.77.1.1"))
    far = topo.client("c2", address("10.77.2.1"))
    allowed = topo.client("c3", address("10.77.2.1"))
    ids = {}
    for name in ("c1", "c2", "c3"):
        server = topo.store.get_server(topo.servers[topo.ns(name)])
        ids[name] = f"i-{server.ec2_id:08x}"
    # One hop: the token arrives and works; the internal header stays inside.
    assert near["token_status"] == 200, near
    assert near["with_token"] == [200, ids["c1"]], near
    assert "x-cloudseed-hop-limit" not in near["token_headers"]  # type: ignore[operator]
    # Two hops: only the token reply is limited; ordinary reads still work.
    assert far["plain"] == [200, ids["c2"]], far
    assert far.get("token_error") == "TimeoutError", far
    # As far away, with hop limit 2: the token arrives.
    assert allowed["token_status"] == 200, allowed
    assert allowed["with_token"] == [200, ids["c3"]], allowed


def test_colocated_front_token_reply_hop_limit(topology: Topology) -> None:
    # No API and no agent: the front resolves and answers in its own process, and sets
    # the limit on the guest's socket itself.
    listeners = topology.tmp / "listeners.json"
    listeners.write_text(render_listener_set([ScopedListeners(
        topology.ns("s"), ProxyScope(network_id=topology.network_id),
        tuple(_listens()[1::2]))]))
    topology.start("proxy", "--listeners-file", str(listeners), "--answers", "co-located",
                   ready=("tcp", "10.77.1.1"))
    _check(topology, 4)
    _check(topology, 6)


@pytest.mark.parametrize("kind", ["builtin", "shared"])
def test_proxy_chain_token_reply_hop_limit(topology: Topology, kind: str) -> None:
    api_port = free_port()
    agent = topology.tmp / "agent.sock"
    topology.start("api", "--host", "127.0.0.1", "--port", str(api_port), "--mode", "proxy",
                   "--workers", "1", ready=("tcp-host", str(api_port)))
    topology.start("agent", "--socket", str(agent), "--api-url",
                   f"http://127.0.0.1:{api_port}", ready=("unix", str(agent)))
    if kind == "shared":
        # The front runs in our namespace and opens its listeners inside S.
        listeners = topology.tmp / "listeners.json"
        listeners.write_text(render_listener_set([ScopedListeners(
            topology.ns("s"), ProxyScope(network_id=topology.network_id),
            tuple(_listens()[1::2]))]))
        topology.start("proxy", "--listeners-file", str(listeners), "--agent-socket",
                       str(agent), ready=("tcp", "10.77.1.1"))
    else:
        topology.start("proxy", "--network-id", topology.network_id, *_listens(),
                       "--agent-socket", str(agent), "--implementation", "builtin",
                       netns=topology.ns("s"), ready=("tcp", "10.77.1.1"))
    _check(topology, 4)
    _check(topology, 6)


def test_direct_mode_token_reply_hop_limit(topology: Topology) -> None:
    # "::" is dual-stack: IPv4 guests arrive on an IPv6 socket as ::ffff:a.b.c.d.
    topology.start("api", "--host", "::", "--port", str(PORT), "--mode", "direct",
                   "--workers", "1", netns=topology.ns("s"), ready=("tcp", "10.77.1.1"))
    _check(topology, 4)
    _check(topology, 6)


def _listens() -> list[str]:
    return [arg for address in ("10.77.1.1", "10.77.2.1", "[fd77:1::1]", "[fd77:2::1]")
            for arg in ("--listen", f"{address}:{PORT}")]


