"""Helpers for tests that start, kill and watch real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last verdict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def alive(pid: int | None) -> bool:
    """``pid`` runs (exists and is not a zombie)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if alive(kid):
                    found.append(kid)
                    todo.append(kid)
    return found


def pid_server_script(name: str) -> str:
    """Python source of a server on the socket handed over as ``name`` (fd 3, as
    systemd socket activation does) that answers each connection with its pid.

    On SIGTERM it stops accepting but finishes the connection it is serving,
    as every cloudseed server does.
    """
    return textwrap.dedent(f"""
        import os, select, signal
        from cloudseed.http.inherit import take
        assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID names us"
        assert os.environ["LISTEN_FDNAMES"] == {name!r}
        [sock] = take({name!r})
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        while not stopping:
            if not select.select([sock], [], [], 0.05)[0]:
                continue
            conn, _ = sock.accept()
            conn.recv(100)
            conn.sendall(str(os.getpid()).encode())
            conn.close()
    """)


def ask(port: int, timeout: float = 10.0) -> int:
    """Connect to 127.0.0.1:port, send, return the pid of the process that answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(b"hi")
        return int(conn.recv(100))


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM ``process``'s group (started with ``start_new_session``), SIGKILL after ``grace``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
