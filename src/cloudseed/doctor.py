"""``cloudseed doctor SERVER``: walk one server's metadata path and name the broken hop.

The walk follows a guest's request: the server and its port in the store;
its network's bridge; the namespace that answers 169.254.169.254 (router or
DHCP) and its leg and addresses; dnsmasq and the guest's route (option 121,
or the plugged guest's own routing table); the REDIRECT rule and its packet
counter (router path); the proxy listening; the agent's socket; the API; the
API accepting the signature the agent would send; and, when the server is
plugged as a namespace, a real request from inside it that must return its
own ``meta_data.json``. Every hop is checked even after a failure, so one
run shows everything that is wrong; the first ✗ is the hop to fix first.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cloudseed.auth.signing import sign_instance_id
from cloudseed.dataplane import firewall, plug, supervise
from cloudseed.dataplane.desired import DesiredState, Leg, MetadataPath, Names
from cloudseed.dataplane.guest import fetch_in_netns
from cloudseed.dataplane.host import DataplaneHost
from cloudseed.dataplane.netns import observe_links
from cloudseed.errors import CloudseedError, NotFound
from cloudseed.http.client import Upstream
from cloudseed.model import Port, Server

# Each probe is a local round trip; anything slower than this is broken.
PROBE_TIMEOUT_SECONDS = 5.0
META_DATA_PATH = "/openstack/latest/meta_data.json"
GUEST_URL = f"http://169.254.169.254{META_DATA_PATH}"


@dataclass(frozen=True, slots=True)
class Hop:
    name: str
    ok: bool | None  # None: not applicable / could not be checked
    detail: str
    fix: str = ""


@dataclass
class _Walk:
    host: DataplaneHost
    server: Server | None = None
    port: Port | None = None
    ipv4: str = ""
    subnet_id: str = ""
    desired: DesiredState | None = None
    path: MetadataPath | None = None


def diagnose(host: DataplaneHost, server_ref: str) -> list[Hop]:
    walk = _Walk(host)
    hops = [_server(walk, server_ref)]
    checks: list[Callable[[_Walk], Hop]] = [
        _port, _segment, _namespace, _legs, _dhcp, _route, _redirect, _proxy,
        _agent, _api, _signature, _guest,
    ]
    for check in checks:
        try:
            hops.append(check(walk))
        except CloudseedError as exc:
            hops.append(Hop(check.__name__.strip("_"), False, exc.message))
    return hops


def first_failure(hops: list[Hop]) -> Hop | None:
    return next((hop for hop in hops if hop.ok is False), None)


def to_json(hops: list[Hop]) -> str:
    failed = first_failure(hops)
    return json.dumps({"ok": failed is None, "first_failure": failed.name if failed else None,
                       "hops": [asdict(hop) for hop in hops]}, indent=2)


def render(hops: list[Hop]) -> str:
    lines = []
    for hop in hops:
        mark = {True: "✓", False: "✗", None: "-"}[hop.ok]
        lines.append(f"{mark} {hop.name:<10} {hop.detail}")
        if hop.ok is False and hop.fix:
            lines.append(f"  {'':<10} fix: {hop.fix}")
    failed = first_failure(hops)
    lines.append(f"first broken hop: {failed.name}" if failed else "every hop is healthy")
    return "\n".join(lines) + "\n"


# -- the hops -------------------------------------------------------------------


def _server(walk: _Walk, server_ref: str) -> Hop:
    try:
        walk.server = walk.host.reader.get_server(server_ref)
    except NotFound:
        return Hop("server", False, f"server {server_ref!r} is not registered",
                   "register it: cloudseed server create …")
    return Hop("server", True, f"{walk.server.name} ({walk.server.id})")


def _port(walk: _Walk) -> Hop:
    if walk.server is None:
        return Hop("port", None, "no server")
    ports = list(walk.host.reader.list_ports(server_id=walk.server.id))
    for port in ports:
        for fixed in port.fixed_ips:
            if ":" not in fixed.ip_address:
                walk.port, walk.ipv4, walk.subnet_id = port, fixed.ip_address, fixed.subnet_id
                walk.desired = walk.host.desired()
                walk.path = walk.desired.metadata_paths.get(port.network_id)
                return Hop("port", True, f"{port.id} {port.mac_address} {fixed.ip_address} on "
                           f"network {port.network_id}")
    return Hop("port", False, "the server has no port with an IPv4 address",
               "register one: cloudseed port create --server … --fixed-ip …")


def _segment(walk: _Walk) -> Hop:
    if walk.port is None:
        return Hop("segment", None, "no port")
    root = walk.host.context.root_netns
    if root and root not in walk.host.runner.namespaces():
        return Hop("segment", False, f"parent namespace {root} does not exist",
                   "cloudseed dataplane sync")
    bridge = Names.bridge(walk.port.network_id)
    link = observe_links(walk.host.runner, root).get(bridge)
    if link is None or not link.is_up:
        return Hop("segment", False, f"bridge {bridge} is {'down' if link else 'missing'}",
                   "cloudseed dataplane sync")
    return Hop("segment", True, f"bridge {bridge} up")


def _namespace(walk: _Walk) -> Hop:
    if walk.port is None:
        return Hop("namespace", None, "no port")
    if walk.path is None:
        return Hop("namespace", False, "no router and no DHCP namespace serves metadata on "
                   "this network", "attach a router, or enable dataplane.force_metadata / "
                   "enable_isolated_metadata")
    if walk.path.namespace not in walk.host.runner.namespaces():
        return Hop("namespace", False, f"{walk.path.namespace} is missing",
                   "cloudseed dataplane sync")
    return Hop("namespace", True, f"{walk.path.namespace} ({walk.path.via})")


def _leg(walk: _Walk) -> Leg | None:
    if walk.desired is None or walk.path is None or walk.port is None:
        return None
    bridge = Names.bridge(walk.port.network_id)
    return next((leg for leg in walk.desired.legs
                 if leg.namespace == walk.path.namespace and leg.bridge == bridge), None)


def _legs(walk: _Walk) -> Hop:
    leg = _leg(walk)
    if leg is None:
        return Hop("legs", None, "no metadata namespace")
    runner, root = walk.host.runner, walk.host.context.root_netns
    inner = observe_links(runner, leg.namespace).get(leg.inner)
    outer = observe_links(runner, root).get(leg.outer)
    if inner is None or outer is None:
        return Hop("legs", False, f"veth {leg.outer} <-> {leg.inner} is missing",
                   "cloudseed dataplane sync")
    missing = [a for a in leg.addresses if a not in inner.addresses]
    if missing or outer.master != leg.bridge or not inner.is_up:
        problem = (f"missing address {', '.join(missing)} on {leg.inner}" if missing
                   else f"{leg.outer} not on {leg.bridge} or {leg.inner} down")
        return Hop("legs", False, problem, "cloudseed dataplane sync")
    return Hop("legs", True, f"{leg.inner} {' '.join(leg.addresses)}")


def _dhcp(walk: _Walk) -> Hop:
    if walk.port is None or walk.desired is None:
        return Hop("dhcp", None, "no port")
    name = f"dnsmasq-{walk.port.network_id}"
    if not any(p.name == name for p in walk.desired.processes):
        return Hop("dhcp", None, "no DHCP on this network (static addressing)")
    state = supervise.observe(walk.host.context.state_dir).get(name)
    if state is None or state.child_pid is None:
        return Hop("dhcp", False, "dnsmasq is not running", "cloudseed dataplane sync")
    hosts = Path(walk.host.plan_context.state_dir, "dhcp", walk.port.network_id, "host")
    try:
        registered = walk.port.mac_address in hosts.read_text()
    except OSError:
        registered = False
    if not registered:
        return Hop("dhcp", False, f"{walk.port.mac_address} is not in {hosts}",
                   "cloudseed dataplane sync")
    return Hop("dhcp", True, f"dnsmasq pid {state.child_pid} serves {walk.port.mac_address}")


def _route(walk: _Walk) -> Hop:
    if walk.path is None or walk.port is None:
        return Hop("route", None, "no metadata path")
    nexthop = walk.path.nexthops.get(walk.subnet_id, "")
    record = plug.read_plugs(walk.host.context.state_dir).get(walk.port.server_id or "")
    if record is not None and record.is_namespace:
        got = walk.host.runner.ip_json("route", "get", "169.254.169.254", netns=record.netns)
        gateway = str(got[0].get("gateway", "")) if got else ""
        if not got or (nexthop and gateway != nexthop):
            seen = f"goes via {gateway}" if gateway else ("is on-link" if got else
                                                          "has no route")
            return Hop("route", False, f"guest {record.netns}: 169.254.169.254 {seen}, "
                       f"expected via {nexthop}",
                       "renew the guest's DHCP lease (option 121), or "
                       f"ip -n {record.netns} route add 169.254.169.254/32 via {nexthop}")
        return Hop("route", True, f"guest {record.netns}: 169.254.169.254 via {gateway}")
    options = Path(walk.host.plan_context.state_dir, "dhcp", walk.port.network_id, "opts")
    wanted = f"169.254.169.254/32,{nexthop}"
    try:
        offered = wanted in options.read_text()
    except OSError:
        offered = False
    if not offered:
        return Hop("route", False, f"DHCP option 121 does not offer {wanted}",
                   "cloudseed dataplane sync")
    return Hop("route", True, f"DHCP option 121 offers 169.254.169.254/32 via {nexthop}")


def _redirect(walk: _Walk) -> Hop:
    if walk.path is None:
        return Hop("redirect", None, "no metadata path")
    if walk.path.via != "router":
        return Hop("redirect", None, "not needed: the DHCP namespace holds 169.254.169.254")
    counters = firewall.rule_counters(walk.host.runner, walk.path.namespace)
    rule = counters.get(firewall.REDIRECT_COMMENT)
    if rule is None:
        return Hop("redirect", False, f"no REDIRECT rule in {walk.path.namespace}",
                   "cloudseed dataplane sync")
    return Hop("redirect", True, f"169.254.169.254:80 → :{walk.host.plan_context.router_proxy_port}"
               f" ({rule.packets} packets)")


def _proxy(walk: _Walk) -> Hop:
    if walk.path is None or walk.desired is None:
        return Hop("proxy", None, "no metadata path")
    name = f"proxy-{'router' if walk.path.via == 'router' else 'network'}-{walk.path.owner_id}"
    spec = next((p for p in walk.desired.processes if p.name == name), None)
    state = supervise.observe(walk.host.context.state_dir).get(name)
    if spec is None or state is None or state.child_pid is None:
        return Hop("proxy", False, f"{name} is not running", "cloudseed dataplane sync")
    port = spec.listen.rpartition(":")[2]
    listening = walk.host.runner.query(["ss", "-Hltn", f"sport = :{port}"],
                                       netns=walk.path.namespace).stdout
    if not listening.strip():
        return Hop("proxy", False, f"{name} (pid {state.child_pid}) is not listening on "
                   f"{spec.listen}", f"see {state.directory / 'log'}")
    return Hop("proxy", True, f"pid {state.child_pid} listening on {spec.listen}")


def _agent(walk: _Walk) -> Hop:
    path = walk.host.settings.agent.socket_path
    status = _http_get(Upstream("unix", socket_path=path), "/healthz", {})
    if status is None:
        return Hop("agent", False, f"nothing answers on {path}", "start it: cloudseed agent")
    return Hop("agent", True, f"{path} answers (HTTP {status[0]})")


def _api(walk: _Walk) -> Hop:
    url = walk.host.settings.agent.api_url
    status = _http_get(Upstream.parse(url), "/", {})
    if status is None:
        return Hop("api", False, f"{url} does not answer", "start it: cloudseed api")
    return Hop("api", True, f"{url} answers (HTTP {status[0]})")


def _signature(walk: _Walk) -> Hop:
    if walk.server is None:
        return Hop("signature", None, "no server")
    settings = walk.host.settings
    server = walk.server
    headers = {
        "X-Instance-ID": server.id,
        "X-Tenant-ID": server.project_id,
        "X-Instance-ID-Signature": sign_instance_id(settings.shared_secret.reveal().encode(),
                                                    server.id),
        "X-Forwarded-For": walk.ipv4 or "127.0.0.1",
    }
    status = _http_get(Upstream.parse(settings.agent.api_url), META_DATA_PATH, headers)
    if status is None:
        return Hop("signature", None, "API unreachable")
    code, body = status
    if code == 200 and _uuid_of(body) == server.id:
        return Hop("signature", True, "the API accepts the agent's signature")
    fixes = {403: "shared_secret differs between the agent's and the API's settings",
             400: "the API is not in proxy mode, or a header is missing",
             404: "the API does not find the server (tenant mismatch or another store)"}
    return Hop("signature", False, f"the API answered {code}",
               fixes.get(code, "see the API's log"))


def _guest(walk: _Walk) -> Hop:
    if walk.server is None:
        return Hop("guest", None, "no server")
    record = plug.read_plugs(walk.host.context.state_dir).get(walk.server.id)
    if record is None or not record.is_namespace:
        return Hop("guest", None, "not plugged as a namespace: no request from inside")
    status, body = fetch_in_netns(record.netns, GUEST_URL, timeout=PROBE_TIMEOUT_SECONDS,
                                  runner=walk.host.runner)
    if status == 200 and _uuid_of(body) == walk.server.id:
        return Hop("guest", True, f"{record.netns}: GET {GUEST_URL} returned its own "
                   "meta_data.json")
    return Hop("guest", False, f"{record.netns}: GET {GUEST_URL} → {status} {body[:120]}",
               "fix the first ✗ above")


# -- small HTTP probes ------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def _http_get(
    upstream: Upstream, path: str, headers: dict[str, str]
) -> tuple[int, str] | None:
    """(status, body) or None when nothing answers."""
    conn: http.client.HTTPConnection
    if upstream.scheme == "unix":
        if not os.path.exists(upstream.socket_path):
            return None
        conn = _UnixConnection(upstream.socket_path, PROBE_TIMEOUT_SECONDS)
    elif upstream.scheme == "https":
        conn = http.client.HTTPSConnection(upstream.host, upstream.port,
                                           timeout=PROBE_TIMEOUT_SECONDS)
    else:
        conn = http.client.HTTPConnection(upstream.host, upstream.port,
                                          timeout=PROBE_TIMEOUT_SECONDS)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _uuid_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return str(data.get("uuid")) if isinstance(data, dict) else None

