"""Listen addresses for the namespace proxy, and entering a namespace.

``169.254.169.254:80`` (DHCP namespace), ``[fe80::a9fe:a9fe%tap0]:80`` (its
IPv6 twin, scoped to the tap), ``0.0.0.0:9697`` (router namespace, behind the
REDIRECT rule). Sockets are bound with IP_FREEBIND so the proxy can start
before the data plane has finished adding the address (or before IPv6 DAD
has finished with it) — haproxy waits for DAD; we need not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
from dataclasses import dataclass

from cloudseed.errors import ConfigError

# <linux/sched.h>
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
# socket.IP_FREEBIND where Python lacks the constant (<linux/in.h>).
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


@dataclass(frozen=True)
class ListenAddress:
    host: str  # without brackets; may carry %zone
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ConfigError(f"--listen {text!r}: expected [IPV6%DEV]:PORT")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or ":" in host:
                raise ConfigError(f"--listen {text!r}: expected ADDR:PORT or [IPV6]:PORT")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"--listen {text!r}: the port is not a number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"--listen {text!r}: the port is out of range")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def bind_socket(address: ListenAddress) -> socket.socket:
    """A bound, non-blocking, not-yet-listening TCP socket for ``address``."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    except socket.gaierror as exc:
        raise ConfigError(f"--listen {address}: {exc.strerror}") from None
    sockaddr = infos[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if family == socket.AF_INET6 and address.host.partition("%")[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {address}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def enter_netns(name: str) -> None:
    """Move this thread — call it before any other thread starts — into /run/netns/NAME.

    Sockets opened afterwards belong to that namespace; threads started
    afterwards inherit it. Python 3.11 has no ``os.setns``, hence libc.
    """
    if "/" in name or name in {"", ".", ".."}:
        raise ConfigError(f"--netns {name!r} is not a namespace name")
    path = os.path.join(NETNS_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"--netns {name}: cannot open {path}: {exc.strerror}") from None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ConfigError(f"--netns {name}: setns failed: {os.strerror(err)}")
    finally:
        os.close(fd)
