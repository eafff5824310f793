"""Crowds of real loopback connections from chosen source addresses (127.0.0.x).

Every 127/8 address is local on Linux, so a test plays several guests by
binding its client sockets to 127.0.0.2, 127.0.0.3, ... against a server
listening on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

# A refused connection is answered and closed at once; an accepted idle one
# stays silent. Waiting this long tells them apart without racing.
READ_SECONDS = 10.0


def connect_from(source: str, host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((source, 0))
    sock.settimeout(READ_SECONDS)
    sock.connect((host, port))
    return sock


def hold(source: str, host: str, port: int, count: int, send: bytes = b"") -> list[socket.socket]:
    """``count`` connection attempts from ``source``, each sending ``send``; those the
    server did not reset at once are kept open and returned."""
    held = []
    for _ in range(count):
        try:
            sock = connect_from(source, host, port)
        except ConnectionResetError:  # refused with a reset during connect
            continue
        try:
            if send:
                sock.sendall(send)
        except (ConnectionResetError, BrokenPipeError):
            sock.close()
            continue
        held.append(sock)
    return held


def read_all(sock: socket.socket, seconds: float = READ_SECONDS) -> bytes:
    """Everything the server sends until it closes (or ``seconds`` of silence)."""
    sock.settimeout(seconds)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def first_status(raw: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(match.group(1)) if match else None


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def wait_until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
