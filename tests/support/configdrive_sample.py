"""Fixed server views for the config drive tests (and the golden image hashes).

Change nothing here without re-deriving the golden hashes in test_build.py:
every byte of the images depends on these values.
"""

from __future__ import annotations

from datetime import date
from types import MappingProxyType

from cloudseed.model import (
    FixedIp,
    HostRoute,
    InjectedFile,
    Ipv6Mode,
    KeyPair,
    KeyType,
    Network,
    Port,
    PortView,
    Server,
    ServerView,
    Subnet,
)
from cloudseed.render.options import RenderOptions

SERVER_ID = "6f3b2c1a-0d4e-4b8a-9c7f-2e5d1a0b3c4d"
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBqjbd0kY2B9s0Cc8pYVw5Eh3lKzG0cXq0m9hNwQx3Lk ops@example"
)
USER_DATA = b"#cloud-config\nruncmd:\n  - [touch, /run/cloudseed-was-here]\n"
VENDOR_CLOUD_CONFIG = "#cloud-config\npackages: [htop]\n"
SEED = b"\x01" * 32

OPTIONS = RenderOptions(
    today=date(2025, 6, 1),
    static_vendordata={"cloud-init": VENDOR_CLOUD_CONFIG, "region": "lab-1"},
)

_NET_DHCP = Network(id="11111111-1111-4111-8111-111111111111", name="dhcp-net")
_NET_STATIC = Network(id="22222222-2222-4222-8222-222222222222", name="static-net", mtu=9000)
_SUBNET_DHCP = Subnet(
    id="aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
    network_id=_NET_DHCP.id,
    cidr="10.0.0.0/24",
    ip_version=4,
    gateway_ip="10.0.0.1",
    dns_nameservers=("10.0.0.2",),
)
_SUBNET_STATIC4 = Subnet(
    id="bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
    network_id=_NET_STATIC.id,
    cidr="192.168.50.0/24",
    ip_version=4,
    gateway_ip="192.168.50.1",
    dns_nameservers=("192.168.50.53", "9.9.9.9"),
    host_routes=(HostRoute(destination="172.16.0.0/12", nexthop="192.168.50.254"),),
    enable_dhcp=False,
)
_SUBNET_STATIC6 = Subnet(
    id="cccccccc-cccc-4ccc-8ccc-cccccccccccc",
    network_id=_NET_STATIC.id,
    cidr="2001:db8:50::/64",
    ip_version=6,
    gateway_ip="2001:db8:50::1",
    enable_dhcp=False,
)
_SUBNET_SLAAC = Subnet(
    id="dddddddd-dddd-4ddd-8ddd-dddddddddddd",
    network_id=_NET_DHCP.id,
    cidr="2001:db8:10::/64",
    ip_version=6,
    gateway_ip="2001:db8:10::1",
    ipv6_address_mode=Ipv6Mode.SLAAC,
)

SERVER = Server(
    id=SERVER_ID,
    name="web-1",
    hostname="web-1",
    project_id="0123456789abcdef0123456789abcdef",
    ec2_id=7,
    image_id="7e57ab1e-0000-4000-8000-000000000001",
    reservation_id="r-00000007",
    key_name="ops",
    metadata=MappingProxyType({"role": "web", "tier": "front"}),
    user_data=USER_DATA,
    files=(
        InjectedFile(path="/etc/motd", content=b"welcome\n"),
        InjectedFile(path="/etc/app.conf", content=b"\x00binary\xff"),
    ),
    config_drive=True,
)

VIEW = ServerView(
    server=SERVER,
    revision=42,
    keypair=KeyPair(name="ops", type=KeyType.SSH, public_key=SSH_KEY, fingerprint="aa:bb"),
    ports=(
        PortView(
            port=Port(
                id="5a1e0001-7c3b-4d2a-9e8f-0a1b2c3d4e01",
                network_id=_NET_DHCP.id,
                mac_address="fa:16:3e:00:00:01",
                fixed_ips=(
                    FixedIp(subnet_id=_SUBNET_DHCP.id, ip_address="10.0.0.5"),
                    FixedIp(subnet_id=_SUBNET_SLAAC.id, ip_address="2001:db8:10::5"),
                ),
                floating_ip="203.0.113.9",
                server_id=SERVER_ID,
            ),
            network=_NET_DHCP,
            subnets=(_SUBNET_DHCP, _SUBNET_SLAAC),
            routed=True,
        ),
        PortView(
            port=Port(
                id="b0a7e002-6d4c-4e3b-8f9a-1b2c3d4e5f02",
                network_id=_NET_STATIC.id,
                mac_address="fa:16:3e:00:00:02",
                fixed_ips=(
                    FixedIp(subnet_id=_SUBNET_STATIC4.id, ip_address="192.168.50.10"),
                    FixedIp(subnet_id=_SUBNET_STATIC6.id, ip_address="2001:db8:50::10"),
                ),
                server_id=SERVER_ID,
            ),
            network=_NET_STATIC,
            subnets=(_SUBNET_STATIC4, _SUBNET_STATIC6),
        ),
    ),
    password="not-on-the-drive",
)

EMPTY_SERVER = Server(
    id="00000000-0000-4000-8000-0000000000e0",
    name="bare",
    hostname="bare",
    project_id="0123456789abcdef0123456789abcdef",
    ec2_id=8,
    config_drive=True,
)
EMPTY_VIEW = ServerView(server=EMPTY_SERVER, revision=1)
EMPTY_OPTIONS = RenderOptions(today=date(2025, 6, 1))
