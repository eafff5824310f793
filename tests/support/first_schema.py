"""A store filled at the first released schema (revision 0001), by plain SQL.

Revision 0001's tables never change, so these rows stay valid however many
migrations follow; upgrade and restore tests start from them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import text

from cloudseed.store.engine import create_store_engine, write_connection
from cloudseed.store.migrate import upgrade

FIRST_REVISION = "0001"
USER_DATA = b"#cloud-config\n\x00\xff binary"
MOTD = b"hello\x00"

# Revision 0001's tables and rows, in foreign-key order.
FIXTURE: dict[str, list[dict[str, Any]]] = {
    "networks": [
        {"id": "net-1", "name": "net1", "mtu": 1450},
        {"id": "net-2", "name": "net2", "mtu": 1500},
    ],
    "subnets": [
        {"id": "sub-1", "network_id": "net-1", "name": "sub1", "cidr": "10.0.0.0/24",
         "ip_version": 4, "gateway_ip": "10.0.0.1", "dns_nameservers": '["10.0.0.2"]',
         "host_routes": '[{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]',
         "enable_dhcp": True, "ipv6_address_mode": None},
        {"id": "sub-6", "network_id": "net-1", "name": "", "cidr": "fd00::/64",
         "ip_version": 6, "gateway_ip": None, "dns_nameservers": "[]", "host_routes": "[]",
         "enable_dhcp": False, "ipv6_address_mode": "slaac"},
    ],
    "routers": [{"id": "rtr-1", "name": "router1"}],
    "router_subnets": [{"router_id": "rtr-1", "subnet_id": "sub-1", "position": 0}],
    "keypairs": [{"name": "key1", "type": "ssh", "public_key": "ssh-ed25519 AAAAC3Nz k@t",
                  "fingerprint": "aa:bb"}],
    "servers": [
        {"id": "srv-1", "name": "vm1", "hostname": "vm1", "project_id": "proj-1",
         "user_id": "user-1", "ec2_id": 41, "availability_zone": "az1",
         "flavor_name": "m1.large", "image_id": "img-1", "launch_index": 2,
         "reservation_id": "r-0001", "key_name": "key1",
         "metadata": '{"role": "db"}', "user_data": USER_DATA,
         "files": json.dumps([{"path": "/etc/motd",
                               "content": base64.b64encode(MOTD).decode()}]),
         "config_drive": True, "imds_tokens": "required", "imds_endpoint": "disabled",
         "created_at": "2024-05-01T12:00:00Z"},
        {"id": "srv-2", "name": "vm2", "hostname": "vm2", "project_id": "proj-1",
         "user_id": "", "ec2_id": 42, "availability_zone": "nova", "flavor_name": "",
         "image_id": "", "launch_index": 0, "reservation_id": "", "key_name": None,
         "metadata": "{}", "user_data": None, "files": "[]", "config_drive": False,
         "imds_tokens": "optional", "imds_endpoint": "enabled",
         "created_at": "2024-05-02T12:00:00Z"},
    ],
    "ports": [
        {"id": "port-1", "network_id": "net-1", "name": "eth0",
         "mac_address": "fa:16:3e:00:00:01", "floating_ip": "203.0.113.5",
         "server_id": "srv-1", "seq": 1},
        {"id": "port-2", "network_id": "net-2", "name": "",
         "mac_address": "fa:16:3e:00:00:02", "floating_ip": None, "server_id": "srv-1",
         "seq": 2},
        {"id": "port-3", "network_id": "net-1", "name": "spare",
         "mac_address": "fa:16:3e:00:00:03", "floating_ip": None, "server_id": None,
         "seq": 3},
    ],
    "port_fixed_ips": [
        {"port_id": "port-1", "position": 0, "network_id": "net-1", "subnet_id": "sub-1",
         "ip_address": "10.0.0.11"},
        {"port_id": "port-1", "position": 1, "network_id": "net-1", "subnet_id": "sub-6",
         "ip_address": "fd00::11"},
    ],
    "passwords": [{"server_id": "srv-1", "value": "c2VjcmV0LXBhc3N3b3Jk"}],
    "changes": [
        {"revision": 6, "kind": "server", "entity_id": "srv-1", "op": "put"},
        {"revision": 7, "kind": "port", "entity_id": "port-3", "op": "put"},
    ],
}


def fill_first_schema(url: str) -> None:
    upgrade(url, FIRST_REVISION)
    engine = create_store_engine(url)
    try:
        with write_connection(engine) as conn, conn.begin():
            conn.execute(text("UPDATE meta SET revision = 7 WHERE id = 1"))
            for table, rows in FIXTURE.items():
                columns = list(rows[0])
                statement = text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                )
                conn.execute(statement, rows)
    finally:
        engine.dispose()
