"""Namespaces, bridges, veth legs and addresses: observe them and change them.

Observation reads ``ip -j -d addr show`` once per namespace; the changes are
single ``ip`` calls. ``root`` is the namespace holding the bridges and the
outer ends of the legs ("" = the host's own); every other namespace is a
named one (``ip netns``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudseed.dataplane.desired import Bridge, Leg
from cloudseed.dataplane.runner import Runner


@dataclass(frozen=True, slots=True)
class LinkState:
    name: str
    kind: str  # "bridge", "veth", "" for plain devices
    master: str
    mac: str
    is_up: bool
    mtu: int
    addresses: frozenset[str]  # "ip/prefixlen", link-local IPv6 autoconf excluded


def observe_links(runner: Runner, netns: str) -> dict[str, LinkState]:
    links: dict[str, LinkState] = {}
    for entry in runner.ip_json("-d", "addr", "show", netns=netns):
        name = str(entry.get("ifname", ""))
        if not name:
            continue
        addresses = frozenset(
            f"{a['local']}/{a['prefixlen']}"
            for a in entry.get("addr_info", [])
            if "local" in a and not _is_autoconf(entry, a)
        )
        links[name] = LinkState(
            name=name,
            kind=str(entry.get("linkinfo", {}).get("info_kind", "")),
            master=str(entry.get("master", "")),
            mac=str(entry.get("address", "")).lower(),
            is_up="UP" in entry.get("flags", []),
            mtu=int(entry.get("mtu", 0)),
            addresses=addresses,
        )
    return links


def _is_autoconf(entry: dict[str, object], addr: dict[str, object]) -> bool:
    """The kernel's own fe80:: address (from the MAC), which we neither add nor remove."""
    local = str(addr.get("local", ""))
    return addr.get("family") == "inet6" and local.startswith("fe80:") and (
        local != "fe80::a9fe:a9fe")


def ensure_namespace(runner: Runner, name: str) -> None:
    runner.add_namespace(name)


def delete_namespace(runner: Runner, name: str) -> None:
    """Kill what still runs inside, then delete (a live process would keep it alive)."""
    runner.kill_namespace_processes(name)
    runner.delete_namespace(name)


def set_loopback_up(runner: Runner, netns: str) -> None:
    runner.ip("link", "set", "lo", "up", netns=netns)


def add_bridge(runner: Runner, root: str, bridge: Bridge) -> None:
    runner.ip("link", "add", bridge.name, "mtu", str(bridge.mtu), "type", "bridge", netns=root)
    # No IPv6 address on the segment itself: it is a switch, not a host.
    runner.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{bridge.name}.disable_ipv6=1"],
               netns=root, check=False)
    runner.ip("link", "set", bridge.name, "up", netns=root)


def set_link_up(runner: Runner, netns: str, name: str) -> None:
    runner.ip("link", "set", name, "up", netns=netns)


def delete_link(runner: Runner, netns: str, name: str) -> None:
    runner.run(["ip", *(["-n", netns] if netns else []), "link", "delete", name], check=False)


def add_leg(runner: Runner, root: str, leg: Leg) -> None:
    """Create the veth pair with its inner end already in the leg's namespace."""
    runner.ip("link", "add", leg.outer, "mtu", str(leg.mtu), "type", "veth", "peer", "name",
              leg.inner, "mtu", str(leg.mtu), "netns", leg.namespace, netns=root)
    runner.ip("link", "set", leg.inner, "address", leg.mac, netns=leg.namespace)
    # Our own legs hear the network's router advertisements (dnsmasq's): they
    # must not configure addresses the plan did not ask for.
    runner.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{leg.inner}.accept_ra=0"],
               netns=leg.namespace, check=False)
    runner.ip("link", "set", leg.outer, "master", leg.bridge, netns=root)
    runner.ip("link", "set", leg.outer, "up", netns=root)
    runner.ip("link", "set", leg.inner, "up", netns=leg.namespace)
    for address in leg.addresses:
        add_address(runner, leg.namespace, leg.inner, address)


def attach(runner: Runner, root: str, link: str, bridge: str) -> None:
    runner.ip("link", "set", link, "master", bridge, netns=root)
    runner.ip("link", "set", link, "up", netns=root)


def set_mac(runner: Runner, netns: str, link: str, mac: str) -> None:
    runner.ip("link", "set", link, "address", mac, netns=netns)


def add_address(runner: Runner, netns: str, link: str, address: str) -> None:
    extra = ["nodad"] if ":" in address else []
    runner.ip("addr", "add", address, "dev", link, *extra, netns=netns)


def delete_address(runner: Runner, netns: str, link: str, address: str) -> None:
    runner.ip("addr", "del", address, "dev", link, netns=netns)
