"""The instances both sides serve: cloudseed views, and the same data as the
JSON spec ``nova_side.py`` builds Nova's instance from.

``RICH``: unicode name and metadata, keys with spaces, binary user-data, two
injected files (one binary), a DHCP IPv4 network with a floating IP and an
untagged NIC, a static IPv4 + IPv6 network with host routes and DNS and a
tagged NIC, a flavor with ephemeral and swap disks, a key pair, a password.
``PLAIN``: UTF-8 user-data with characters inside and outside Latin-1, no
key, no password yet (the password POST flow runs on it).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from types import MappingProxyType
from typing import Any

from tests.support.samples import (
    DHCP_NET,
    DHCP_PORT,
    DHCP_SUBNET,
    STATIC_NET,
    STATIC_PORT,
    STATIC_V4,
)
from tests.support.samples import STATIC_V6 as SAMPLE_STATIC_V6

from cloudseed.model import (
    FixedIp,
    HostRoute,
    InjectedFile,
    KeyPair,
    KeyType,
    Port,
    PortView,
    Server,
    ServerView,
    Subnet,
)
from cloudseed.render.ec2 import ami_id

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDifferentialTestKeyOnly000000000000 ops@example"
STATIC_VENDORDATA: dict[str, object] = {
    "cloud-init": "#cloud-config\npackages: [htop]\n",
    "région": "ünïcödé ☃",
}
# What Nova's EC2 id mapping gives an image (an integer from its database).
NOVA_AMI_ID = "ami-00000001"

# The renderer samples' networks, with an IPv6 host route added.
STATIC_V6 = dataclasses.replace(
    SAMPLE_STATIC_V6,
    host_routes=(HostRoute(destination="2001:db8:99::/48", nexthop="2001:db8:50::fe"),),
)

RICH_ID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PLAIN_ID = "7a2b3c4d-5e6f-4a7b-9c8d-0e1f2a3b4c5d"
PROJECT = "0123456789abcdef0123456789abcdef"

RICH = ServerView(
    server=Server(
        id=RICH_ID,
        name="wëb-1 ☃",
        hostname="web-1",
        project_id=PROJECT,
        user_id="fedcba9876543210fedcba9876543210",
        ec2_id=42,
        availability_zone="zone-ä",
        flavor_name="m1.smäll",
        root_gb=20,
        ephemeral_gb=5,
        swap_mb=512,
        image_id="0b3c5a2e-1d4f-4e6a-9b8c-7d6e5f4a3b2c",
        launch_index=3,
        reservation_id="r-3k9x2m1q",
        key_name="ops key",
        metadata=MappingProxyType(
            {"rôle": "wéb ☃", "key with spaces": "value with spaces", "tier": "front"}
        ),
        user_data=b"\x00\xff\xfebinary\x80user-data\n\x1f\x8b",
        files=(
            InjectedFile(path="/etc/motd", content="hällo ☃\n".encode()),
            InjectedFile(path="/root/blob.bin", content=bytes(range(256))),
        ),
        config_drive=True,
    ),
    revision=1,
    keypair=KeyPair(name="ops key", type=KeyType.SSH, public_key=SSH_KEY, fingerprint="fp"),
    ports=(
        # The renderer samples' ports (this server's id), the static one's tag in unicode.
        PortView(port=DHCP_PORT, network=DHCP_NET, subnets=(DHCP_SUBNET,)),
        PortView(port=dataclasses.replace(STATIC_PORT, tag="storage ☃"), network=STATIC_NET,
                 subnets=(STATIC_V4, STATIC_V6)),
    ),
    password="c2VjcmV0LWVuY3J5cHRlZC1ieS10aGUtZ3Vlc3Q=",
)

PLAIN = ServerView(
    server=Server(
        id=PLAIN_ID,
        name="plain",
        hostname="plain",
        project_id=PROJECT,
        ec2_id=43,
        reservation_id="r-00000043",
        # "é" is inside Latin-1, "☃" and "€" are not.
        user_data="#cloud-config\n# café ☃ €\n".encode(),
    ),
    revision=1,
    ports=(
        PortView(
            port=Port(
                id="c3d4e5f6-a7b8-4933-8abb-ccddeeff0011",
                network_id=DHCP_NET.id,
                mac_address="fa:16:3e:00:00:03",
                fixed_ips=(FixedIp(subnet_id=DHCP_SUBNET.id, ip_address="10.0.0.6"),),
                server_id=PLAIN_ID,
            ),
            network=DHCP_NET,
            subnets=(DHCP_SUBNET,),
        ),
    ),
)

VIEWS = (RICH, PLAIN)


def _devname(port_id: str) -> str:
    # Nova's NIC_NAME_LEN tap names, as our data plane creates them.
    return ("tap" + port_id)[:14]


def _subnet(subnet: Subnet, port: Port) -> dict[str, Any]:
    network = ipaddress.ip_network(subnet.cidr)
    return {
        "cidr": subnet.cidr,
        "gateway": subnet.gateway_ip,
        "dns": list(subnet.dns_nameservers),
        "routes": [[r.destination, r.nexthop] for r in subnet.host_routes],
        "ips": [
            {
                "address": f.ip_address,
                "floating": [port.floating_ip] if port.floating_ip and network.version == 4 else [],
            }
            for f in port.fixed_ips
            if f.subnet_id == subnet.id
        ],
        # Neutron's DHCP port on the subnet, which Nova reports as dhcp_server.
        "dhcp_server": str(network.network_address + 2) if subnet.enable_dhcp else None,
        "ipv6_address_mode": subnet.ipv6_address_mode.value if subnet.ipv6_address_mode else None,
    }


def nova_spec(view: ServerView, secret: str, dhcp_domain: str = "novalocal") -> dict[str, Any]:
    """``view`` as the JSON ``nova_side.py`` builds a Nova instance from."""
    server = view.server
    key = view.keypair
    return {
        "secret": secret,
        "dhcp_domain": dhcp_domain,
        "static_vendordata": STATIC_VENDORDATA,
        "uuid": server.id,
        "ec2_id": server.ec2_id,
        "name": server.name,
        "hostname": server.hostname,
        "project_id": server.project_id,
        "user_id": server.user_id,
        "availability_zone": server.availability_zone,
        "launch_index": server.launch_index,
        "reservation_id": server.reservation_id,
        "image_ref": server.image_id,
        "ami_id": NOVA_AMI_ID if server.image_id else ami_id(""),
        "flavor": {
            "name": server.flavor_name,
            "root_gb": server.root_gb,
            "ephemeral_gb": server.ephemeral_gb,
            "swap": server.swap_mb,
        },
        "key": None
        if key is None
        else {"name": key.name, "type": key.type.value, "public_key": key.public_key},
        "metadata": dict(server.metadata),
        "user_data_b64": None
        if server.user_data is None
        else base64.b64encode(server.user_data).decode(),
        "password": view.password,
        "files": [[f.path, base64.b64encode(f.content).decode()] for f in server.files],
        "vifs": [
            {
                "id": pv.port.id,
                "address": pv.port.mac_address,
                "devname": _devname(pv.port.id),
                "type": "bridge",
                "tag": pv.port.tag,
                "network": {
                    "id": pv.network.id,
                    "mtu": pv.network.mtu,
                    "subnets": [_subnet(s, pv.port) for s in pv.subnets],
                },
            }
            for pv in view.ports
        ],
    }
