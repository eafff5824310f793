"""Free TCP ports for servers a test starts — one helper for every test.

Ports come from BELOW the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``), never from it: a port the kernel may hand
out as the source of any outgoing connection can be taken between "free a
moment ago" and the server's bind (seen as "Address already in use" on a busy
machine), and a client polling such a port before its server listens can
connect to itself (TCP simultaneous open; the client then reads its own
request back as the "response").
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Well above the ports system services and the test PostgreSQL (55432) use.
_LOWEST = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1", count: int = 1) -> int:
    """A port such that ``port .. port+count-1`` on ``host`` were all free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low() - count
    if high <= _LOWEST:
        raise RuntimeError(f"the ephemeral port range starts too low ({high + count})")
    for _ in range(200):
        base = random.randint(_LOWEST, high)
        socks: list[socket.socket] = []
        try:
            for n in range(count):
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind((host, base + n))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free ports below the ephemeral range")
