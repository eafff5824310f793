"""The sample cloud that ``cloudseed demo`` builds: pure data, no I/O.

Two networks — one behind a router (metadata through the router namespace's
REDIRECT to 9697) and one isolated (metadata from the DHCP namespace holding
169.254.169.254, reached through DHCP option 121) — with one guest each.
Without root there are no namespaces, so the loopback variant puts one guest
on a 127.0.90.0/24 "network" whose address the guest binds as its source.
All addresses live only inside namespaces the demo creates, or on loopback.
"""

from __future__ import annotations

import base64
from typing import Any

DEMO_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7d9giuNoHBjYFhGx7Ds/s+Lpfz9NMjzbd8CfHC9Gcx "
    "demo@cloudseed"
)
ROOT_NETNS = "cloudseed-demo"
LOOPBACK_PROXY = "127.0.0.1:8797"
GUESTS = ("demo-vm-1", "demo-vm-2")


def _user_data(name: str) -> str:
    text = f"#cloud-config\nhostname: {name}\nfqdn: {name}.demo.local\n"
    return base64.b64encode(text.encode()).decode()


def _server(name: str, network: str, ip: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "key_name": "demo-key",
        "flavor_name": "m1.small",
        "availability_zone": "demo-az",
        "metadata": {"role": role, "owner": "cloudseed-demo"},
        "user_data": _user_data(name),
        "ports": [{"network": network, "fixed_ips": [{"ip_address": ip}]}],
    }


def namespace_inventory() -> dict[str, Any]:
    """Routed + isolated networks with a guest each (needs root)."""
    return {
        "version": 1,
        "keypairs": [{"name": "demo-key", "public_key": DEMO_PUBLIC_KEY}],
        "networks": [
            {"name": "demo-routed", "subnets": [{"cidr": "10.90.1.0/24"}]},
            {"name": "demo-isolated", "subnets": [{"cidr": "10.90.2.0/24"}]},
        ],
        "routers": [{"name": "demo-router", "subnets": ["demo-routed"]}],
        "servers": [
            _server("demo-vm-1", "demo-routed", "10.90.1.11", "web"),
            _server("demo-vm-2", "demo-isolated", "10.90.2.12", "db"),
        ],
    }


def loopback_inventory() -> dict[str, Any]:
    """One guest reachable over loopback (no root, no namespaces)."""
    return {
        "version": 1,
        "keypairs": [{"name": "demo-key", "public_key": DEMO_PUBLIC_KEY}],
        "networks": [
            {"name": "demo-loopback", "subnets": [{"cidr": "127.0.90.0/24", "enable_dhcp": False}]}
        ],
        "servers": [_server("demo-vm-1", "demo-loopback", "127.0.90.11", "web")],
    }


def guest_netns(server_name: str) -> str:
    return f"{ROOT_NETNS}-{server_name}"
