"""One HTTP/1.1 GET over TCP or a Unix socket, for readiness and single-shot timings.

Blocking and minimal on purpose: the harness uses it for a handful of
requests (is it up, how long does the first cold request take, is a change
visible yet); the load itself comes from the C generator.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

# A metadata document is at most ~64 KiB; a reply past this is not ours.
MAX_REPLY_BYTES = 1 << 20


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    seconds: float


def _connect(target: str, timeout: float, source: str | None) -> socket.socket:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(target[5:])
        return sock
    host, _, port = target.removeprefix("tcp:").rpartition(":")
    if not (host.startswith("127.") or host in ("::1", "[::1]")):
        raise ValueError(f"refusing a non-loopback target {target}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect((host, int(port)))
    return sock


def http_get(
    target: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 5.0,
    source: str | None = None,
) -> Reply:
    started = time.perf_counter()
    with _connect(target, timeout, source) as sock:
        lines = [f"GET {path} HTTP/1.1", "Host: 169.254.169.254", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks: list[bytes] = []
        size = 0
        while size < MAX_REPLY_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            raw = b"".join(chunks)
            head, sep, body = raw.partition(b"\r\n\r\n")
            if sep and _complete(head, body):
                break
    seconds = time.perf_counter() - started
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"no HTTP reply from {target}") from None
    return Reply(status, body, seconds)


def _complete(head: bytes, body: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
