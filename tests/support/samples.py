"""The servers the renderer tests (and the cloud-init conformance test) use.

``rich``: key pair, metadata, user-data, two injected files, a password, a
flavor with ephemeral and swap disks, and two ports -- one on a DHCP IPv4
network with a floating IP, one (tagged ``storage``) on a static IPv4 + IPv6
network with host routes and DNS servers (one shared with the DHCP subnet, to
show de-duplication).
``bare``: nothing optional at all.
"""

from __future__ import annotations

from datetime import date
from types import MappingProxyType

from cloudseed.model import (
    FixedIp,
    HostRoute,
    InjectedFile,
    KeyPair,
    KeyType,
    Network,
    Port,
    PortView,
    Server,
    ServerView,
    Subnet,
)
from cloudseed.render import RenderOptions

TODAY = date(2026, 1, 15)

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq7cloudseedtestkeyonly0000000000000 ops@example"

DHCP_NET = Network(id="11111111-2222-4333-8444-555555555555", name="dhcp-net", mtu=1450)
DHCP_SUBNET = Subnet(
    id="aaaaaaaa-0000-4000-8000-000000000001",
    network_id=DHCP_NET.id,
    cidr="10.0.0.0/24",
    ip_version=4,
    gateway_ip="10.0.0.1",
    dns_nameservers=("10.0.0.2",),
    enable_dhcp=True,
)
STATIC_NET = Network(id="66666666-7777-4888-9999-000000000000", name="static-net", mtu=9000)
STATIC_V4 = Subnet(
    id="bbbbbbbb-0000-4000-8000-000000000002",
    network_id=STATIC_NET.id,
    cidr="192.168.50.0/24",
    ip_version=4,
    gateway_ip="192.168.50.1",
    dns_nameservers=("192.168.50.2", "10.0.0.2"),
    host_routes=(HostRoute(destination="172.16.0.0/16", nexthop="192.168.50.254"),),
    enable_dhcp=False,
)
STATIC_V6 = Subnet(
    id="cccccccc-0000-4000-8000-000000000003",
    network_id=STATIC_NET.id,
    cidr="2001:db8:50::/64",
    ip_version=6,
    gateway_ip="2001:db8:50::1",
    dns_nameservers=("2001:db8:50::53",),
    enable_dhcp=False,
)

DHCP_PORT = Port(
    id="a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
    network_id=DHCP_NET.id,
    mac_address="fa:16:3e:00:00:01",
    fixed_ips=(FixedIp(subnet_id=DHCP_SUBNET.id, ip_address="10.0.0.5"),),
    floating_ip="203.0.113.10",
    server_id="6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
)
STATIC_PORT = Port(
    id="b2c3d4e5-f6a7-4822-99aa-bbccddeeff00",
    network_id=STATIC_NET.id,
    mac_address="fa:16:3e:00:00:02",
    fixed_ips=(
        FixedIp(subnet_id=STATIC_V4.id, ip_address="192.168.50.10"),
        FixedIp(subnet_id=STATIC_V6.id, ip_address="2001:db8:50::10"),
    ),
    tag="storage",
    server_id="6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
)

RICH = ServerView(
    server=Server(
        id="6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        name="web-1",
        hostname="web-1",
        project_id="0123456789abcdef0123456789abcdef",
        user_id="fedcba9876543210fedcba9876543210",
        ec2_id=42,
        availability_zone="zone-a",
        flavor_name="m1.small",
        root_gb=20,
        ephemeral_gb=5,
        swap_mb=512,
        image_id="0b3c5a2e-1d4f-4e6a-9b8c-7d6e5f4a3b2c",
        launch_index=0,
        reservation_id="r-3k9x2m1q",
        key_name="ops",
        metadata=MappingProxyType({"role": "web", "tier": "frontend"}),
        user_data=b"#cloud-config\nhostname: web-1\n",
        files=(
            InjectedFile(path="/etc/motd", content=b"hello from cloudseed\n"),
            InjectedFile(path="/root/notes.txt", content=b"second file\n"),
        ),
    ),
    revision=7,
    keypair=KeyPair(name="ops", type=KeyType.SSH, public_key=SSH_KEY, fingerprint="fp"),
    ports=(
        PortView(port=DHCP_PORT, network=DHCP_NET, subnets=(DHCP_SUBNET,), routed=True),
        PortView(port=STATIC_PORT, network=STATIC_NET, subnets=(STATIC_V4, STATIC_V6)),
    ),
    password="c2VjcmV0LWVuY3J5cHRlZC1ieS10aGUtZ3Vlc3Q=",
)

BARE = ServerView(
    server=Server(
        id="00000000-1111-4222-8333-444444444444",
        name="bare",
        hostname="bare",
        project_id="0123456789abcdef0123456789abcdef",
        ec2_id=1,
        reservation_id="r-00000001",
    ),
    revision=1,
)

RICH_OPTIONS = RenderOptions(
    today=TODAY,
    static_vendordata=MappingProxyType({"cloud-init": "#cloud-config\npackages: [htop]\n"}),
    dynamic_vendordata=MappingProxyType({"inventory": {"rack": "r12"}}),
)
BARE_OPTIONS = RenderOptions(today=TODAY)

CASES = {"rich": (RICH, RICH_OPTIONS), "bare": (BARE, BARE_OPTIONS)}

# Paths no server's tree has (unknown versions, leaves Nova does not serve, the
# token path, escapes): every renderer answers None.
OUTSIDE_THE_TREE = (
    "/2010-01-01/meta-data/instance-id",
    "/openstack/2099-01-01/meta_data.json",
    "/openstack/2012-08-10/network_data.json",
    "/openstack/content",
    "/openstack/content/9999",
    "/openstack/%2e%2e/latest",
    "/latest/api/token",
    "/latest/meta-data/kernel-id",
    "/latest/dynamic/instance-identity/document",
    "/elsewhere",
)
