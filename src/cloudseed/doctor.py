"""``cloudseed doctor SERVER``: walk one server's metadata path and name the broken hop.

The walk follows a guest's request: the server and its port in the store;
its network's bridge; the namespace that answers 169.254.169.254 (router or
DHCP) and its leg and addresses; the MAC the bridge learned for the guest;
dnsmasq (its files readable, the guest's lease) and the guest's route
(option 121, or the plugged guest's own routing table); the REDIRECT rule and
its packet counter (router path); the proxy listening; the agent resolving
this guest; the API; the API accepting the signature the agent would send;
and, when the server is plugged as a namespace, a real request from inside
it that must return its own ``meta_data.json``.

Every hop is checked even after a failure, so one run shows everything that
is wrong; the first ✗ is the hop to fix first. A hop the doctor cannot see
(a guest it did not plug: its routing table, a request from inside) is
reported as not seen, never as healthy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cloudseed import doctor_guest, doctor_http
from cloudseed.dataplane import firewall, plug, supervise
from cloudseed.dataplane.desired import DesiredState, Leg, MetadataPath, Names
from cloudseed.dataplane.guest import fetch_in_netns
from cloudseed.dataplane.host import DataplaneHost
from cloudseed.dataplane.netns import observe_links
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS, front_files
from cloudseed.errors import CloudseedError, NotFound
from cloudseed.model import Port, Server
from cloudseed.proxy.listener_set import parse_listener_set

META_DATA_PATH = doctor_http.META_DATA_PATH
GUEST_URL = f"http://169.254.169.254{META_DATA_PATH}"
GUEST_URL_V6 = f"http://[fe80::a9fe:a9fe%eth0]{META_DATA_PATH}"


@dataclass(frozen=True, slots=True)
class Hop:
    name: str
    ok: bool | None  # None: not applicable, or not seen (seen=False)
    detail: str
    fix: str = ""
    # False: the doctor cannot see this hop from here (never counted as healthy).
    seen: bool = True


@dataclass
class Walk:
    host: DataplaneHost
    server: Server | None = None
    port: Port | None = None
    address: str = ""  # the guest's IPv4 address, else its IPv6 address
    subnet_id: str = ""
    desired: DesiredState | None = None
    path: MetadataPath | None = None
    api_status: tuple[int, str] | None = None  # (HTTP status or 0, where), probed once

    @property
    def ipv6_only(self) -> bool:
        return ":" in self.address


def diagnose(host: DataplaneHost, server_ref: str) -> list[Hop]:
    walk = Walk(host)
    hops = [_server(walk, server_ref)]
    checks: list[Callable[[Walk], Hop]] = [
        _port, _segment, _namespace, _legs, doctor_guest.mac, doctor_guest.dhcp_hop,
        doctor_guest.lease, doctor_guest.route, _redirect, _proxy, doctor_http.agent,
        doctor_http.api, doctor_http.signature, _guest,
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
                       "not_seen": [hop.name for hop in hops if not hop.seen],
                       "hops": [asdict(hop) for hop in hops]}, indent=2)


def render(hops: list[Hop]) -> str:
    lines = []
    for hop in hops:
        mark = {True: "✓", False: "✗", None: "-"}[hop.ok]
        lines.append(f"{mark} {hop.name:<10} {hop.detail}")
        if hop.ok is False and hop.fix:
            lines.append(f"  {'':<10} fix: {hop.fix}")
    failed = first_failure(hops)
    unseen = [hop.name for hop in hops if not hop.seen]
    if failed:
        lines.append(f"first broken hop: {failed.name}")
    elif unseen:
        lines.append(f"no broken hop among those it can see; not seen: {', '.join(unseen)}")
    else:
        lines.append("every hop is healthy")
    return "\n".join(lines) + "\n"


# -- the hops -------------------------------------------------------------------


def _server(walk: Walk, server_ref: str) -> Hop:
    try:
        walk.server = walk.host.reader.get_server(server_ref)
    except NotFound:
        return Hop("server", False, f"server {server_ref!r} is not registered",
                   "register it: cloudseed server create …")
    return Hop("server", True, f"{walk.server.name} ({walk.server.id})")


def _port(walk: Walk) -> Hop:
    if walk.server is None:
        return Hop("port", None, "no server")
    ports = list(walk.host.reader.list_ports(server_id=walk.server.id))
    fixed_ips = [(port, fixed) for port in ports for fixed in port.fixed_ips]
    # IPv4 first (the 169.254.169.254 path); an IPv6-only guest uses fe80::a9fe:a9fe.
    fixed_ips.sort(key=lambda pair: ":" in pair[1].ip_address)
    if not fixed_ips:
        return Hop("port", False, "the server has no port with a fixed IP",
                   "register one: cloudseed port create --server … --fixed-ip …")
    port, fixed = fixed_ips[0]
    walk.port, walk.address, walk.subnet_id = port, fixed.ip_address, fixed.subnet_id
    walk.desired = walk.host.desired()
    walk.path = walk.desired.metadata_paths.get(port.network_id)
    return Hop("port", True, f"{port.id} {port.mac_address} {fixed.ip_address} on "
               f"network {port.network_id}")


def _segment(walk: Walk) -> Hop:
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


def _namespace(walk: Walk) -> Hop:
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


def _leg(walk: Walk) -> Leg | None:
    if walk.desired is None or walk.path is None or walk.port is None:
        return None
    bridge = Names.bridge(walk.port.network_id)
    return next((leg for leg in walk.desired.legs
                 if leg.namespace == walk.path.namespace and leg.bridge == bridge), None)


def _legs(walk: Walk) -> Hop:
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


def _redirect(walk: Walk) -> Hop:
    if walk.path is None:
        return Hop("redirect", None, "no metadata path")
    if walk.path.via != "router":
        return Hop("redirect", None, "not needed: the DHCP namespace holds 169.254.169.254")
    counters = firewall.rule_counters(walk.host.runner, walk.path.namespace)
    comment, target = ((firewall.REDIRECT_V6_COMMENT, f"[{firewall.METADATA_V6_IP}]")
                       if walk.ipv6_only else (firewall.REDIRECT_COMMENT, firewall.METADATA_V4_IP))
    rule = counters.get(comment)
    if rule is None:
        return Hop("redirect", False, f"no REDIRECT rule for {target} in {walk.path.namespace}",
                   "cloudseed dataplane sync")
    return Hop("redirect", True, f"{target}:80 → :{walk.host.plan_context.router_proxy_port}"
               f" ({rule.packets} packets)")


def _proxy(walk: Walk) -> Hop:
    if walk.path is None or walk.desired is None:
        return Hop("proxy", None, "no metadata path")
    name = f"proxy-{'router' if walk.path.via == 'router' else 'network'}-{walk.path.owner_id}"
    spec = next((p for p in walk.desired.processes if p.name == name), None)
    listen = spec.listen if spec else ""
    front = next((p for p in walk.desired.processes if p.name == SHARED_FRONT_PROCESS), None)
    if spec is None and front is not None:
        # The shared front: one process, this namespace's listeners in its file.
        name, spec = SHARED_FRONT_PROCESS, front
        listen = _front_listen(walk.desired, walk.host.plan_context.state_dir,
                               walk.path.namespace)
    state = supervise.observe(walk.host.context.state_dir).get(name)
    if spec is None or state is None or state.child_pid is None:
        return Hop("proxy", False, f"{name} is not running", "cloudseed dataplane sync")
    port = listen.rpartition(":")[2]
    listening = walk.host.runner.query(["ss", "-Hltn", f"sport = :{port}"],
                                       netns=walk.path.namespace).stdout
    if not listening.strip():
        return Hop("proxy", False, f"{name} (pid {state.child_pid}) is not listening on "
                   f"{listen} in {walk.path.namespace}", f"see {state.directory / 'log'}")
    return Hop("proxy", True, f"{name} pid {state.child_pid} listening on {listen}")


def _front_listen(desired: DesiredState, state_dir: str, namespace: str) -> str:
    path = front_files(state_dir)[0]
    text = next((f.content for f in desired.files if f.path == path), "")
    entries = parse_listener_set(text) if text else []
    return next((e.listen[0] for e in entries if e.namespace == namespace), "")


def _guest(walk: Walk) -> Hop:
    if walk.server is None:
        return Hop("guest", None, "no server")
    record = plug.read_plugs(walk.host.context.state_dir).get(walk.server.id)
    if record is None or not record.is_namespace:
        how = f"plugged as tap {record.device}" if record else "not plugged by cloudseed"
        return Hop("guest", None, f"{how}: cannot send a request from inside the guest",
                   seen=False)
    url = GUEST_URL_V6 if walk.ipv6_only else GUEST_URL
    status, body = fetch_in_netns(record.netns, url, timeout=doctor_http.PROBE_TIMEOUT_SECONDS,
                                  runner=walk.host.runner)
    if status == 200 and doctor_http.uuid_of(body) == walk.server.id:
        return Hop("guest", True, f"{record.netns}: GET {url} returned its own "
                   "meta_data.json")
    return Hop("guest", False, f"{record.netns}: GET {url} → {status} {body[:120]}",
               "fix the first ✗ above")
