"""The guest-facing hops of ``cloudseed doctor``: MAC, dnsmasq, lease, route.

What is seen comes from the bridge's learned MACs and dnsmasq's own log
(``dataplane/evidence.py``) — both work for a guest cloudseed did not plug —
and, for a namespace guest cloudseed plugged, its own interface and routing
table. What cannot be seen is reported as such (``seen=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cloudseed.dataplane import dhcp, dhcp_probe, evidence, plug, supervise
from cloudseed.dataplane.desired import Names
from cloudseed.dataplane.plug import GUEST_INTERFACE, PlugRecord
from cloudseed.model import Ipv6Mode

if TYPE_CHECKING:
    from cloudseed.doctor import Hop, Walk


def _hop(name: str, ok: bool | None, detail: str, fix: str = "", *, seen: bool = True) -> Hop:
    from cloudseed.doctor import Hop

    return Hop(name, ok, detail, fix, seen)


def _plugged(walk: Walk) -> PlugRecord | None:
    return plug.read_plugs(walk.host.context.state_dir).get(walk.port.server_id or "") \
        if walk.port else None


def _dnsmasq_log(walk: Walk) -> str | None:
    assert walk.port is not None
    return evidence.read_log(dhcp.files_for(walk.host.plan_context.state_dir,
                                            walk.port.network_id).log)


def _mismatch_fix(expected: str, learned: str) -> str:
    return (f"give the guest's NIC the port's MAC {expected} (QEMU: -device "
            f"virtio-net-pci,netdev=…,mac={expected}; libvirt: <mac address='{expected}'/>), "
            f"or register the port with --mac-address {learned}; otherwise cloud-init finds "
            "no NIC for its network config ('Unable to find a system nic')")


def mac(walk: Walk) -> Hop:
    if walk.port is None:
        return _hop("mac", None, "no port")
    expected = walk.port.mac_address.lower()
    bridge = Names.bridge(walk.port.network_id)
    learned = evidence.learned_macs(walk.host.runner, walk.host.context.root_netns, bridge)
    record = _plugged(walk)
    if record is not None:
        on_device = {m: seen for m, seen in learned.items() if seen.port == record.device}
        mine = on_device.get(expected)
        # A guest's NIC sends from one MAC: any other learned on its port is a mismatch.
        others = sorted((seen.age, m) for m, seen in on_device.items() if m != expected)
        if mine is not None and not others:
            return _hop("mac", True, f"{bridge} learned {expected} on {record.device}")
        if others:
            stranger = others[0][1]
            return _hop("mac", False, f"{bridge} learned {stranger} on {record.device} "
                        f"({others[0][0]} s ago), but the port's MAC is {expected}",
                        _mismatch_fix(expected, stranger))
        return _hop("mac", None, f"{bridge} has learned no MAC on {record.device} yet "
                    "(the guest has sent nothing)", seen=False)
    if expected in learned:
        return _hop("mac", True, f"{bridge} learned {expected} on {learned[expected].port}")
    log = _dnsmasq_log(walk) or ""
    strangers = [m for m in evidence.refused_macs(evidence.dhcp_events(log)) if m != expected]
    if strangers:
        return _hop("mac", False, f"dnsmasq refused DHCP from {', '.join(strangers[-3:])}, "
                    f"which no port has, and {bridge} never saw the port's MAC {expected}",
                    _mismatch_fix(expected, strangers[-1]))
    return _hop("mac", None, f"{bridge} has not learned {expected}: the guest is not on this "
                "bridge yet, or has sent nothing", seen=False)


def dhcp_hop(walk: Walk) -> Hop:
    if walk.port is None or walk.desired is None:
        return _hop("dhcp", None, "no port")
    name = f"dnsmasq-{walk.port.network_id}"
    if not any(p.name == name for p in walk.desired.processes):
        return _hop("dhcp", None, "no DHCP on this network (static addressing)")
    state = supervise.observe(walk.host.context.state_dir).get(name)
    if state is None or state.child_pid is None:
        return _hop("dhcp", False, "dnsmasq is not running", "cloudseed dataplane sync")
    files = dhcp.files_for(walk.host.plan_context.state_dir, walk.port.network_id)
    log = evidence.read_log(files.log)
    if log is None:
        return _hop("dhcp", False, f"dnsmasq (pid {state.child_pid}) keeps no log at "
                    f"{files.log}", "cloudseed dataplane sync (restarts it with its log)")
    unreadable = evidence.unreadable(log, (files.hosts, files.options))
    if unreadable:
        user = walk.host.plan_context.dnsmasq_user
        path, reason = next(iter(unreadable.items()))
        return _hop("dhcp", False, f"dnsmasq (as user {user}) cannot read {path}: {reason}; "
                    "it answers no DHCP client",
                    f"set dataplane.dnsmasq_user to the owner of {files.directory} (empty = "
                    "the user running sync), or move dataplane.state_dir where that user can "
                    "read, then cloudseed dataplane sync")
    if _subnet_mode(walk) is not Ipv6Mode.SLAAC:
        try:
            registered = walk.port.mac_address in Path(files.hosts).read_text()
        except OSError:
            registered = False
        if not registered:
            return _hop("dhcp", False, f"{walk.port.mac_address} is not in {files.hosts}",
                        "cloudseed dataplane sync")
    if walk.ipv6_only:
        return _hop("dhcp", True, f"dnsmasq pid {state.child_pid} read its files")
    # A real DHCPDISCOVER for the port's MAC, from a probe namespace on the bridge.
    offer = dhcp_probe.probe_bridge(walk.host.runner, walk.host.context.root_netns,
                                    Names.bridge(walk.port.network_id), walk.port.mac_address)
    if offer.get("offered") != walk.address:
        got = offer.get("offered") or "no offer"
        return _hop("dhcp", False, f"a DHCPDISCOVER for {walk.port.mac_address} got {got}, "
                    f"expected {walk.address}",
                    f"see {files.log}; then cloudseed dataplane sync")
    return _hop("dhcp", True, f"dnsmasq pid {state.child_pid} read its files and offers "
                f"{walk.address} to {walk.port.mac_address}")


def _subnet_mode(walk: Walk) -> Ipv6Mode | None:
    subnet = next((s for s in walk.host.reader.list_subnets() if s.id == walk.subnet_id), None)
    return subnet.ipv6_address_mode if subnet else None


def lease(walk: Walk) -> Hop:
    if walk.port is None or walk.desired is None:
        return _hop("lease", None, "no port")
    if not any(p.name == f"dnsmasq-{walk.port.network_id}" for p in walk.desired.processes):
        return _hop("lease", None, "no DHCP on this network")
    if walk.ipv6_only:
        if _subnet_mode(walk) is Ipv6Mode.SLAAC:
            return _hop("lease", None, "SLAAC: the guest builds its own address, no lease")
        return _plugged_address(walk, "dnsmasq's log names DHCPv6 clients by DUID, not MAC")
    log = _dnsmasq_log(walk) or ""
    reply = evidence.last_reply(evidence.dhcp_events(log), walk.port.mac_address)
    if reply is None:
        return _plugged_address(walk, f"dnsmasq has no DHCP exchange with "
                                f"{walk.port.mac_address} since it started")
    if reply.message == "DHCPNAK":
        return _hop("lease", False, f"dnsmasq refused {walk.port.mac_address}'s request "
                    f"(DHCPNAK {reply.rest})", "renew the guest's lease (dhclient -r; dhclient)")
    if reply.ip != walk.address:
        return _hop("lease", False, f"dnsmasq acknowledged {reply.ip}, the port says "
                    f"{walk.address}", "cloudseed dataplane sync, then renew the guest's lease")
    return _hop("lease", True, f"dnsmasq acknowledged {reply.ip} to {walk.port.mac_address}")


def _plugged_address(walk: Walk, unseen: str) -> Hop:
    """The address on a namespace guest's own interface, when dnsmasq's log cannot tell."""
    record = _plugged(walk)
    if record is None or not record.is_namespace:
        return _hop("lease", None, unseen, seen=False)
    addresses = {str(a.get("local")) for entry in walk.host.runner.ip_json(
        "addr", "show", GUEST_INTERFACE, netns=record.netns)
        for a in entry.get("addr_info", [])}
    if walk.address in addresses:
        return _hop("lease", True, f"guest {record.netns} has {walk.address} on "
                    f"{GUEST_INTERFACE}")
    return _hop("lease", False, f"guest {record.netns} does not have {walk.address} on "
                f"{GUEST_INTERFACE}", "run the guest's DHCP client (dhclient / dhclient -6)")


def route(walk: Walk) -> Hop:
    if walk.path is None or walk.port is None:
        return _hop("route", None, "no metadata path")
    if walk.ipv6_only:
        return _hop("route", None, "not needed: fe80::a9fe:a9fe is on the guest's link")
    nexthop = walk.path.nexthops.get(walk.subnet_id, "")
    record = _plugged(walk)
    if record is not None and record.is_namespace:
        got = walk.host.runner.ip_json("route", "get", "169.254.169.254", netns=record.netns)
        gateway = str(got[0].get("gateway", "")) if got else ""
        if not got or (nexthop and gateway != nexthop):
            seen = f"goes via {gateway}" if gateway else ("is on-link" if got else
                                                          "has no route")
            return _hop("route", False, f"guest {record.netns}: 169.254.169.254 {seen}, "
                        f"expected via {nexthop}",
                        "renew the guest's DHCP lease (option 121), or "
                        f"ip -n {record.netns} route add 169.254.169.254/32 via {nexthop}")
        return _hop("route", True, f"guest {record.netns}: 169.254.169.254 via {gateway}")
    options = dhcp.files_for(walk.host.plan_context.state_dir, walk.port.network_id).options
    wanted = f"169.254.169.254/32,{nexthop}"
    try:
        offered = wanted in Path(options).read_text()
    except OSError:
        offered = False
    if not offered:
        return _hop("route", False, f"DHCP option 121 does not offer {wanted}",
                    "cloudseed dataplane sync")
    return _hop("route", None, f"DHCP option 121 offers 169.254.169.254/32 via {nexthop}; the "
                "guest's own routing table is not visible (not plugged by cloudseed as a "
                "namespace)", seen=False)
