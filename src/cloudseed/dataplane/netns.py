"""Namespaces, bridges, veth legs and addresses: observe them and change them.

Observation reads the kernel over netlink (``netlink.py``, through the
runner). Changes are ``ip`` commands where they create links or act from the
root namespace, and in-process steps (netlink, /proc/sys) inside a namespace;
in ``Runner.batch`` both are queued and made a few process starts at a time.
``root`` is the namespace holding the bridges and the outer ends of the legs
("" = the host's own); every other namespace is a named one (``ip netns``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cloudseed.dataplane import netlink
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
    set_link_up(runner, netns, "lo")


def add_bridge(runner: Runner, root: str, bridge: Bridge) -> None:
    runner.ip("link", "add", bridge.name, "mtu", str(bridge.mtu), "type", "bridge", netns=root)
    runner.ip("link", "set", bridge.name, "up", netns=root)
    # No IPv6 address on the segment itself: it is a switch, not a host. (Up
    # first is safe: a bridge without ports has no carrier, so no address yet.)
    set_sysctl(runner, root, f"net/ipv6/conf/{bridge.name}/disable_ipv6", "1")


def set_link_up(runner: Runner, netns: str, name: str) -> None:
    runner.in_netns(netns, f"ip link set {name} up", lambda: netlink.set_link_up(name))


def set_sysctl(runner: Runner, netns: str, key: str, value: str) -> None:
    """Write /proc/sys/KEY inside ``netns`` (its net/ tree is the namespace's own).

    A missing key (IPv6 disabled on the host) is not an error: the setting
    then has nothing to act on.
    """
    def write() -> None:
        with contextlib.suppress(FileNotFoundError):
            Path("/proc/sys", key).write_text(value)

    runner.in_netns(netns, f"sysctl {key.replace('/', '.')}={value}", write)


def delete_link(runner: Runner, netns: str, name: str) -> None:
    runner.ip("link", "delete", name, netns=netns, check=False)


def add_leg(runner: Runner, root: str, leg: Leg) -> None:
    """Create the veth pair with its inner end already in the leg's namespace, MAC set."""
    runner.ip("link", "add", leg.outer, "mtu", str(leg.mtu), "type", "veth", "peer", "name",
              leg.inner, "mtu", str(leg.mtu), "address", leg.mac, "netns", leg.namespace,
              netns=root)
    runner.ip("link", "set", leg.outer, "master", leg.bridge, netns=root)
    runner.ip("link", "set", leg.outer, "up", netns=root)
    # Our own legs hear the network's router advertisements (dnsmasq's): they
    # must not configure addresses the plan did not ask for (set before up).
    set_sysctl(runner, leg.namespace, f"net/ipv6/conf/{leg.inner}/accept_ra", "0")
    set_link_up(runner, leg.namespace, leg.inner)
    for address in leg.addresses:
        add_address(runner, leg.namespace, leg.inner, address)


def attach(runner: Runner, root: str, link: str, bridge: str) -> None:
    runner.ip("link", "set", link, "master", bridge, netns=root)
    runner.ip("link", "set", link, "up", netns=root)


def set_mac(runner: Runner, netns: str, link: str, mac: str) -> None:
    runner.ip("link", "set", link, "address", mac, netns=netns)


def add_address(runner: Runner, netns: str, link: str, address: str) -> None:
    """Add ``address`` (IPv6 without duplicate detection: ``nodad``)."""
    runner.in_netns(netns, f"ip addr add {address} dev {link}",
                    lambda: netlink.add_address(link, address))


def delete_address(runner: Runner, netns: str, link: str, address: str) -> None:
    runner.ip("addr", "del", address, "dev", link, netns=netns)
