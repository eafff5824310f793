"""Listen addresses for the namespace proxy, and entering a namespace.

``169.254.169.254:80`` (DHCP namespace), ``[fe80::a9fe:a9fe%tap0]:80`` (its
IPv6 twin, scoped to the tap), ``0.0.0.0:9697`` (router namespace, behind the
REDIRECT rule). Sockets are bound with IP_FREEBIND so the proxy can start
before the data plane has finished adding the address (or before IPv6 DAD
has finished with it) — haproxy waits for DAD; we need not.

A socket belongs to the network namespace of the thread that created it, for
its whole life. A per-namespace proxy enters its namespace once, before any
thread exists (``enter_netns``); the shared front binds in many namespaces
from one process, each batch in a dedicated thread that enters the
namespace, binds, and switches back (``bind_in_namespaces``): ``setns`` acts
on the calling thread only, so the event loop's thread never moves.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import socket
import threading
from collections.abc import Iterator, Sequence
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


def bind_socket(address: ListenAddress, *, dual_stack: bool = True) -> socket.socket:
    """A bound, non-blocking, not-yet-listening TCP socket for ``address``.

    ``[::]`` takes IPv4 too (one dual-stack socket, as Neutron's haproxy binds)
    unless ``dual_stack`` is off: then an IPv4 wildcard on the same port can
    be bound beside it (``bind_sockets`` decides).
    """
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
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {address}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def bind_sockets(addresses: Sequence[ListenAddress]) -> list[socket.socket]:
    """Bind every address (all or none).

    ``0.0.0.0:P`` beside ``[::]:P``: the IPv6 wildcard is made IPv6-only,
    else both would claim IPv4 port P and the second ``listen`` fails.
    """
    v4_wildcard_ports = {a.port for a in addresses if a.host == "0.0.0.0"}  # noqa: S104
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sockets.append(bind_socket(address,
                                       dual_stack=address.port not in v4_wildcard_ports))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@functools.cache  # find_library costs ~2 ms (it reads ldconfig): once per process
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _open_netns(name: str) -> int:
    if "/" in name or name in {"", ".", ".."}:
        raise ConfigError(f"--netns {name!r} is not a namespace name")
    path = os.path.join(NETNS_DIR, name)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"--netns {name}: cannot open {path}: {exc.strerror}") from None


def _setns(fd: int, what: str) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        raise ConfigError(f"--netns {what}: setns failed: {os.strerror(ctypes.get_errno())}")


def enter_netns(name: str) -> None:
    """Move this thread — call it before any other thread starts — into /run/netns/NAME.

    Sockets opened afterwards belong to that namespace; threads started
    afterwards inherit it. Python 3.11 has no ``os.setns``, hence libc.
    """
    fd = _open_netns(name)
    try:
        _setns(fd, name)
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """This thread in /run/netns/NAME for the block, then back where it was."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = _open_netns(name)
        try:
            _setns(target, name)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, "(back to our own)")
    finally:
        os.close(own)


NetnsIdentity = tuple[int, int]  # (st_dev, st_ino) of the namespace's nsfs file


@dataclass(frozen=True)
class Bound:
    """One namespace's sockets, and which namespace they really are in."""

    sockets: list[socket.socket]
    netns: NetnsIdentity


# What one namespace's batch gave: its sockets, or why there are none.
BindOutcome = Bound | ConfigError


def netns_identity(name: str) -> NetnsIdentity | None:
    """The namespace /run/netns/NAME names now (None: no such namespace; "" = our own).

    A namespace deleted and created again under the same name is another
    namespace: sockets bound in the old one do not serve the new one.
    """
    path = os.path.join(NETNS_DIR, name) if name else "/proc/self/ns/net"
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def bind_in_namespaces(
    wanted: Sequence[tuple[str, Sequence[ListenAddress]]],
) -> list[BindOutcome]:
    """Bind each (namespace, addresses) in its namespace, from one dedicated thread.

    Blocking (a thread start and a setns per namespace); callers on an event
    loop run it in a thread of their own. A namespace that fails gets its
    ``ConfigError`` in its place; the others are bound all the same.
    """
    outcomes: list[BindOutcome] = []

    def work() -> None:
        for namespace, addresses in wanted:
            try:
                with inside(namespace) if namespace else contextlib.nullcontext():
                    here = os.stat("/proc/thread-self/ns/net")
                    outcomes.append(Bound(bind_sockets(addresses), (here.st_dev, here.st_ino)))
            except ConfigError as exc:
                outcomes.append(exc)

    worker = threading.Thread(target=work, name="netns-bind", daemon=True)
    worker.start()
    worker.join()
    return outcomes
