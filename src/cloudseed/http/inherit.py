"""Listening sockets: opened once by whoever supervises a server, inherited by the server.

A listening socket must outlive the process that accepts on it: while a
server restarts, clients wait in the socket's backlog instead of being
refused. So the supervisor (``cloudseed.supervisor``; the API master for its
workers; systemd for a socket unit) opens each socket and hands it over the
way systemd socket activation does: fds 3.., ``LISTEN_FDS`` (how many),
``LISTEN_FDNAMES`` (colon-separated names), ``LISTEN_PID`` (whom they are
for). A server asks ``take(name)`` first and opens its own socket only when
nothing was handed over (run by hand).

A server whose listeners come and go while it runs (the shared front opens
one set per network namespace, inside the namespace) cannot have them opened
by its supervisor in advance. It hands each new set *up* instead: a child
started with a ``SocketKeeper`` gets one more inherited socket, ``handoff``,
the near end of a socket pair whose far end its supervisor reads; the child
sends each new set over it (SCM_RIGHTS) under a key before it listens, and
says which keys it no longer wants. The supervisor keeps a copy of every
held socket and hands them all, under their keys, to the next child it
starts, exactly like the sockets it opened itself. So a crash of that child
refuses nothing (clients wait in the backlog of the copy), and a released
socket is closed on both sides (nothing keeps a removed namespace alive).

Opening a Unix socket never unlinks a live one: an existing socket file is
probed with a connect first, and one that answers belongs to a running
server, which is named (its pid, from SO_PEERCRED) in the refusal.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from cloudseed.errors import ConfigError
from cloudseed.log import get_logger

log = get_logger("inherit")

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


def take_all() -> dict[str, list[socket.socket]]:
    """Every handed-over socket not taken yet, by name."""
    global _handed
    if _handed is None:
        _handed = _collect()
    rest, _handed = _handed, {}
    return rest


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


# -- sockets a child hands up to its supervisor ------------------------------------

HANDOFF = "handoff"
# The kernel passes at most 253 descriptors in one message (SCM_MAX_FD).
MAX_FDS_PER_MESSAGE = 250
_MESSAGE_BYTES = 1 << 20
# A supervisor that does not read for this long is wedged; the child serves on.
HANDOFF_TIMEOUT_SECONDS = 5.0
# LISTEN_FDNAMES is one environment string: the kernel refuses an exec with one
# over 128 KiB (MAX_ARG_STRLEN). About 9,000 kept sockets at 13 bytes a name.
MAX_FDNAMES_BYTES = 120_000


class SocketKeeper:
    """The supervisor's side: sockets its child handed up, by key, handed back at every start.

    The child's messages wait in the socket pair until ``collect`` reads them,
    descriptors included, even after the child died; ``for_start`` collects
    first, so a set handed up just before a crash reaches the next child.
    """

    def __init__(self) -> None:
        self.held: dict[str, list[socket.socket]] = {}
        self._channel: socket.socket | None = None
        self._far: socket.socket | None = None

    def for_start(self) -> list[tuple[str, socket.socket]]:
        """What the next child inherits: a fresh channel, then every held socket."""
        self.collect()
        names = sum((len(key) + 1) * len(socks) for key, socks in self.held.items())
        if names > MAX_FDNAMES_BYTES:
            # Could not be exec'd at all: better the child binds afresh (a short gap
            # while it does) than never starts.
            log.error("too many kept sockets to hand over; the child opens its own",
                      extra={"fields": {"sockets": sum(len(s) for s in self.held.values()),
                                        "names_bytes": names, "limit": MAX_FDNAMES_BYTES}})
            self.close()
        if self._channel is not None:
            self._channel.close()
        self._channel, self._far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._channel.setblocking(False)
        return [(HANDOFF, self._far),
                *((key, sock) for key, socks in self.held.items() for sock in socks)]

    def started(self) -> None:
        """The child has its end now (or never will): ours must not keep it open."""
        if self._far is not None:
            self._far.close()
            self._far = None

    def collect(self) -> None:
        """Apply every message the child has sent (never blocks)."""
        while self._channel is not None:
            try:
                data, fds, flags, _ = socket.recv_fds(self._channel, _MESSAGE_BYTES,
                                                      MAX_FDS_PER_MESSAGE,
                                                      socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                data, fds, flags = b"", [], 0
            if not data and not fds:  # the child is gone and everything it sent is read
                self._channel.close()
                self._channel = None
                return
            if flags & socket.MSG_CTRUNC:
                log.error("handed-up sockets lost: message truncated")
            self._apply(data, [socket.socket(fileno=fd) for fd in fds])

    def _apply(self, data: bytes, socks: list[socket.socket]) -> None:
        try:
            message = json.loads(data)
            keep = [(str(key), int(count)) for key, count in message.get("keep", [])]
            release = [str(key) for key in message.get("release", [])]
        except (ValueError, TypeError, AttributeError):
            log.error("unreadable handoff message ignored", extra={"fields": {
                "bytes": len(data), "sockets": len(socks)}})
            keep, release = [], []
        if sum(count for _, count in keep) != len(socks):
            keep = []  # a message that does not add up holds nothing
        for key in release:
            for sock in self.held.pop(key, []):
                sock.close()
        for key, count in keep:
            for sock in self.held.pop(key, []):
                sock.close()
            self.held[key], socks = socks[:count], socks[count:]
        for sock in socks:
            sock.close()

    def close(self) -> None:
        for socks in self.held.values():
            for sock in socks:
                sock.close()
        self.held.clear()
        self.started()
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class Handoff:
    """The child's side: the sockets its supervisor kept for it, and the channel to keep more."""

    def __init__(self, channel: socket.socket, held: dict[str, list[socket.socket]]) -> None:
        self.channel = channel
        self.channel.settimeout(HANDOFF_TIMEOUT_SECONDS)
        self.held = held

    @classmethod
    def inherited(cls) -> Handoff | None:
        """Ours when our supervisor keeps sockets for us (None: run by hand)."""
        channel = take(HANDOFF)
        return cls(channel[0], take_all()) if channel else None

    def adopt(self, key: str) -> list[socket.socket]:
        """The sockets kept under ``key`` (each set is adopted once)."""
        return self.held.pop(key, [])

    def keep(self, sets: Sequence[tuple[str, Sequence[socket.socket]]]) -> None:
        """Hand these sets up; after this returns they survive our death."""
        batch: list[tuple[str, Sequence[socket.socket]]] = []
        for key, socks in sets:
            if batch and sum(len(s) for _, s in batch) + len(socks) > MAX_FDS_PER_MESSAGE:
                self._send({"keep": [[k, len(s)] for k, s in batch]}, batch)
                batch = []
            batch.append((key, socks))
        if batch:
            self._send({"keep": [[k, len(s)] for k, s in batch]}, batch)

    def release(self, keys: Iterable[str]) -> None:
        """Our supervisor closes its copies of these: they serve nothing any more."""
        keys = list(keys)
        if keys:
            self._send({"release": keys}, [])

    def release_unadopted(self) -> None:
        """Close and release what was kept for us but is no longer wanted."""
        unwanted, self.held = self.held, {}
        for socks in unwanted.values():
            for sock in socks:
                sock.close()
        self.release(unwanted)

    def _send(self, message: dict[str, object],
              batch: Sequence[tuple[str, Sequence[socket.socket]]]) -> None:
        fds = [sock.fileno() for _, socks in batch for sock in socks]
        try:
            socket.send_fds(self.channel, [json.dumps(message).encode()], fds)
        except OSError as exc:
            # We serve on; only the survival of these sockets across our crash is lost.
            log.error("cannot hand sockets to the supervisor", extra={"fields": {
                "error": exc.strerror or type(exc).__name__, "sockets": len(fds)}})
