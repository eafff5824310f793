"""Listening sockets: opened once by whoever supervises a server, inherited by the server.

A listening socket must outlive the process that accepts on it: while a
server restarts, clients wait in the socket's backlog instead of being
refused. So the supervisor (``cloudseed.supervisor``; the API master for its
workers; systemd for a socket unit) opens each socket and hands it over the
way systemd socket activation does: fds 3.., ``LISTEN_FDS`` (how many),
``LISTEN_FDNAMES`` (colon-separated names), ``LISTEN_PID`` (whom they are
for). A server asks ``take(name)`` first and opens its own socket only when
nothing was handed over (run by hand).

Opening a Unix socket never unlinks a live one: an existing socket file is
probed with a connect first, and one that answers belongs to a running
server, which is named (its pid, from SO_PEERCRED) in the refusal.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from pathlib import Path

from cloudseed.errors import ConfigError

LISTEN_FDS_START = 3
BACKLOG = 4096
_handed: dict[str, list[socket.socket]] | None = None


def _collect() -> dict[str, list[socket.socket]]:
    env = os.environ
    count = env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    target = env.pop("LISTEN_PID", "")
    handed: dict[str, list[socket.socket]] = {}
    if not count.isdigit() or (target and target != str(os.getpid())):
        return handed
    for index in range(int(count)):
        fd = LISTEN_FDS_START + index
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        sock.set_inheritable(False)  # ours now; whom we start gets them explicitly
        name = names[index] if index < len(names) and names[index] else "unknown"
        handed.setdefault(name, []).append(sock)
    return handed


def take(name: str) -> list[socket.socket]:
    """The sockets our supervisor handed over under ``name`` (each is taken once)."""
    global _handed
    if _handed is None:
        _handed = _collect()
    return _handed.pop(name, [])


def open_tcp(host: str, port: int, *, backlog: int = BACKLOG) -> socket.socket:
    if ":" in host:
        return socket.create_server((host, port), family=socket.AF_INET6, backlog=backlog,
                                    dualstack_ipv6=host == "::")
    return socket.create_server((host, port), backlog=backlog)


def socket_holder(path: str | Path) -> int | None:
    """The pid serving the Unix socket at ``path``; None if nothing answers there.

    0 when something answers but the kernel does not say who.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except OSError:
        return 0  # a full backlog or a timeout: something is there and busy
    try:
        pid, _, _ = struct.unpack("3i", probe.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return int(pid)
    except OSError:
        return 0
    finally:
        probe.close()


def open_unix(path: str | Path, *, mode: int = 0o660, backlog: int = BACKLOG,
              setting: str = "the socket path") -> socket.socket:
    """Bind and listen on ``path``; refuse, naming the holder, if a live server is there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.stat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket; move it away or change "
                              f"{setting}")
        holder = socket_holder(path)
        if holder is not None:
            who = f"process {holder}" if holder else "a running process"
            stop = f"stop it first (kill {holder})" if holder else "stop it first"
            raise ConfigError(f"{path} is in use by {who}: another instance is serving "
                              f"there; {stop} or change {setting}")
        path.unlink()  # stale: nobody accepts on it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path} ({exc.strerror}); check {setting}") from None
    return sock
