"""The socket units hand the control API and the agent their listening sockets.

``systemd-socket-activate`` does what systemd does for a socket unit: it
listens, and on the first connection starts the service with the socket as
fd 3 and ``LISTEN_FDS``/``LISTEN_FDNAMES``/``LISTEN_PID`` set. It is given
each shipped unit's ``FileDescriptorName``, and the service's own settings
name another address, so an answer proves the handed socket was served.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port
from tests.support.units import unit_settings

from cloudseed.dataplane.desired import default_cloudseed_command
from cloudseed.store.migrate import upgrade


@contextmanager
def activated(listen: str, unit: str, command: str, env: dict[str, str]) -> Iterator[None]:
    (name,) = unit_settings(unit)["FileDescriptorName"]
    process = subprocess.Popen(
        ["systemd-socket-activate", "-l", listen, f"--fdname={name}",
         *default_cloudseed_command(), command],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


def _connect(family: socket.AddressFamily, address: str | tuple[str, int]) -> socket.socket:
    """Connect once systemd-socket-activate listens (it starts the service on this connect)."""
    deadline = time.monotonic() + 30
    while True:
        sock = socket.socket(family)
        try:
            sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        sock.settimeout(30)
        return sock


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    with sock:
        sock.sendall(request)
        return sock.recv(4096)


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


def test_control_api_serves_the_socket_its_unit_hands_over(tmp_path: Path) -> None:
    port = free_port()
    env = {"CLOUDSEED_STORE_URL": _store(tmp_path), "CLOUDSEED_CONTROL_TOKENS": "t",
           "CLOUDSEED_CONTROL_PORT": str(free_port())}
    with activated(f"127.0.0.1:{port}", "cloudseed-control.socket", "control", env):
        sock = _connect(socket.AF_INET, ("127.0.0.1", port))
        answer = _exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_agent_serves_the_socket_its_unit_hands_over(tmp_path: Path) -> None:
    path = tmp_path / "handed.sock"
    env = {"CLOUDSEED_STORE_URL": _store(tmp_path), "CLOUDSEED_SHARED_SECRET": "s",
           "CLOUDSEED_AGENT_SOCKET_PATH": str(tmp_path / "configured.sock"),
           "CLOUDSEED_AGENT_METRICS_PORT": "-1"}
    with activated(str(path), "cloudseed-agent.socket", "agent", env):
        sock = _connect(socket.AF_UNIX, str(path))
        # No router or network header: the agent answers 400 itself, without the API.
        answer = _exchange(sock, b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4")
    assert not (tmp_path / "configured.sock").exists()
