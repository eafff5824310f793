"""Two tenants that both use 10.0.0.5, for resolution tests.

    tenant A: network net-a (10.0.0.0/24 + fd00:a::/64) behind router rtr-a; srv-a at 10.0.0.5
    tenant B: network net-b (10.0.0.0/24)              behind router rtr-b; srv-b at 10.0.0.5
    tenant C: network net-c (10.0.0.0/24), no router (DHCP-namespace case); srv-c at 10.0.0.5
"""

from __future__ import annotations

from cloudseed.model import FixedIp, Network, Port, Router, Server, Subnet
from cloudseed.store import SqlStore

SAME_IP = "10.0.0.5"
MAC_A = "fa:16:3e:aa:bb:cc"
LLA_A = "fe80::f816:3eff:feaa:bbcc"  # EUI-64 of MAC_A
V6_A = "fd00:a::5"


# Real UUIDs, for chains that end at the real metadata API.
UUIDS = {
    "a": "0a0a0a0a-0000-4000-8000-00000000000a",
    "b": "0b0b0b0b-0000-4000-8000-00000000000b",
    "c": "0c0c0c0c-0000-4000-8000-00000000000c",
}


def server(name: str, project: str, uuids: bool = False) -> Server:
    sid = UUIDS[name] if uuids else f"srv-{name}"
    return Server(id=sid, name=f"server-{name}", hostname=name, project_id=project)


def build(
    store: SqlStore, ip: str = SAME_IP, cidr: str = "10.0.0.0/24", uuids: bool = False
) -> int:
    """Write the world; returns the revision it ends at."""
    with store.write() as w:
        for name in ("a", "b", "c"):
            w.put_network(Network(f"net-{name}", f"net-{name}"))
            w.put_subnet(Subnet(f"sub-{name}", f"net-{name}", cidr, 4))
        w.put_subnet(Subnet("sub-a6", "net-a", "fd00:a::/64", 6))
        w.put_router(Router("rtr-a", "router-a", ("sub-a", "sub-a6")))
        w.put_router(Router("rtr-b", "router-b", ("sub-b",)))
        ids = {name: w.put_server(server(name, f"proj-{name}", uuids)).id for name in "abc"}
        w.put_port(Port("port-a", "net-a", MAC_A,
                        (FixedIp("sub-a", ip), FixedIp("sub-a6", V6_A)), server_id=ids["a"]))
        w.put_port(Port("port-b", "net-b", "fa:16:3e:00:00:0b",
                        (FixedIp("sub-b", ip),), server_id=ids["b"]))
        w.put_port(Port("port-c", "net-c", "fa:16:3e:00:00:0c",
                        (FixedIp("sub-c", ip),), server_id=ids["c"]))
    return store.revision()
