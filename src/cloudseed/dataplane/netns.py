"""Namespaces, bridges, veth legs and addresses: observe them and change them.

Observation reads the kernel over netlink (``netlink.py``, through the
runner); the changes are single ``ip`` calls. ``root`` is the namespace
holding the bridges and the outer ends of the legs ("" = the host's own);
every other namespace is a named one (``ip netns``).
"""

from __future__ import annotations

from cloudseed.dataplane.desired import Bridge, Leg
from cloudseed.dataplane.netlink import LinkState
from cloudseed.dataplane.runner import Runner


def observe_links(runner: Runner, netns: str) -> dict[str, LinkState]:
    """One namespace's links (empty when it does not exist)."""
    read = runner.read_namespaces([netns]).get(netns)
    return read.links if read is not None else {}


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
