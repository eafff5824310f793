"""The benchmark's fleet: N servers on one network, each with its own loopback IP.

Every simulated VM is a distinct registered server whose fixed IP is a
loopback address (127.64.0.0/10 holds four million), so the load generator
can bind() to it and the proxy sees each VM as a different guest, exactly as
it would in a namespace. The fleet is a bulk-import document (the shape of
``cloudseed.control.document.Document``); ``sample_view`` is the same server
built in memory, for rendering the crawl without a running service.
"""

from __future__ import annotations

import base64
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from cloudseed.model import (
    FixedIp,
    KeyPair,
    KeyType,
    Network,
    Port,
    PortView,
    Server,
    ServerView,
    Subnet,
)

# A block of loopback no host uses for anything else; /10 leaves room for the
# 100,000-server scale run many times over.
SUBNET_CIDR = "127.64.0.0/10"
GATEWAY_IP = "127.64.0.1"
# Servers start one /24 above the gateway, so no VM ever binds the gateway.
FIRST_HOST_OFFSET = 256
NETWORK_NAME = "bench-net"
NETWORK_ID = "6f1c1b0e-0b6a-4c53-9d4e-000000000001"
SUBNET_ID = "6f1c1b0e-0b6a-4c53-9d4e-000000000002"
PROJECT_ID = "bench-project"
KEY_NAME = "bench-key"
# A well-formed ed25519 public key whose key bytes are 0..31: no private half
# exists anywhere, and nothing ever logs in.
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f bench"
)
_ID_NAMESPACE = uuid.UUID("3b0c9e62-8f5e-4d2a-9a43-6c1d7ab0b001")
# A cloud-config of a realistic size (a few hundred bytes).
USER_DATA = (
    b"#cloud-config\n"
    b"package_update: false\n"
    b"write_files:\n"
    b"  - path: /etc/motd\n"
    b"    content: |\n"
    b"      provisioned by cloudseed (benchmark fleet)\n"
    b"runcmd:\n"
    b"  - [sh, -c, 'echo booted > /run/bench-booted']\n"
)
# Static vendor data, so vendor_data.json answers 200 as cloud-init expects it
# in a real deployment (without it the file is listed but 404s, as in Nova).
VENDOR_DATA: dict[str, Any] = {"cloud-init": "#cloud-config\ntimezone: UTC\n"}


@dataclass(frozen=True, slots=True)
class Vm:
    index: int
    server_id: str
    name: str
    ip: str
    # Set, not left to the store, so the EC2 crawl's per-MAC paths are known.
    mac: str


def vm(index: int) -> Vm:
    base = int(ipaddress.ip_network(SUBNET_CIDR).network_address)
    low = index + 1
    return Vm(
        index=index,
        server_id=str(uuid.uuid5(_ID_NAMESPACE, f"vm-{index}")),
        name=f"vm-{index:06d}",
        ip=str(ipaddress.ip_address(base + FIRST_HOST_OFFSET + index)),
        mac=f"fa:16:3e:{low >> 16 & 0xFF:02x}:{low >> 8 & 0xFF:02x}:{low & 0xFF:02x}",
    )


def vms(count: int) -> list[Vm]:
    return [vm(i) for i in range(count)]


def _server_doc(v: Vm) -> dict[str, Any]:
    return {
        "id": v.server_id,
        "name": v.name,
        "hostname": v.name,
        "project_id": PROJECT_ID,
        "key_name": KEY_NAME,
        "metadata": {"role": "bench", "index": str(v.index)},
        "user_data": base64.b64encode(USER_DATA).decode("ascii"),
        "networks": [{"network": NETWORK_NAME, "fixed_ip": v.ip, "mac_address": v.mac}],
    }


def fleet_document(count: int) -> dict[str, Any]:
    """The bulk-import document for ``count`` servers."""
    return {
        "version": 1,
        "keypairs": [{"name": KEY_NAME, "public_key": PUBLIC_KEY}],
        "networks": [
            {
                "id": NETWORK_ID,
                "name": NETWORK_NAME,
                "subnets": [
                    {
                        "id": SUBNET_ID,
                        "cidr": SUBNET_CIDR,
                        "gateway_ip": GATEWAY_IP,
                        "dns_nameservers": ["127.0.0.53"],
                    }
                ],
            }
        ],
        "servers": [_server_doc(v) for v in vms(count)],
    }


def sample_view(index: int = 0) -> ServerView:
    """Server ``index`` as the store would describe it, built in memory."""
    v = vm(index)
    network = Network(id=NETWORK_ID, name=NETWORK_NAME)
    subnet = Subnet(
        id=SUBNET_ID,
        network_id=NETWORK_ID,
        cidr=SUBNET_CIDR,
        ip_version=4,
        gateway_ip=GATEWAY_IP,
        dns_nameservers=("127.0.0.53",),
    )
    port = Port(
        id=str(uuid.uuid5(_ID_NAMESPACE, f"port-{index}")),
        network_id=NETWORK_ID,
        mac_address=v.mac,
        fixed_ips=(FixedIp(SUBNET_ID, v.ip),),
        server_id=v.server_id,
    )
    server = Server(
        id=v.server_id,
        name=v.name,
        hostname=v.name,
        project_id=PROJECT_ID,
        ec2_id=index + 1,
        key_name=KEY_NAME,
        metadata={"role": "bench", "index": str(index)},
        user_data=USER_DATA,
        created_at="2024-01-01T00:00:00Z",
    )
    keypair = KeyPair(KEY_NAME, KeyType.SSH, PUBLIC_KEY, "00:00")
    return ServerView(
        server=server,
        revision=1,
        keypair=keypair,
        ports=(PortView(port=port, network=network, subnets=(subnet,)),),
    )
