"""Start Nova's real metadata app (``nova_side.py``) in its own venv: alone on
wsgiref for the tests, or under uwsgi with N workers for the benchmark."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.openstack_venv import NOVA, openstack_python
from tests.support.processes import stop_group, wait_until

SIDE = Path(__file__).with_name("nova_side.py")
START_TIMEOUT_SECONDS = 120
# Nova 34 ships its metadata API only as a WSGI app; uwsgi is what devstack
# and the distributions run it under. A binary wheel, so no compiler is needed.
UWSGI = "pyuwsgi==2.0.30.post1"


def _write_specs(specs: list[dict[str, Any]], directory: Path) -> Path:
    path = directory / "nova-specs.json"
    path.write_text(json.dumps(specs))
    return path


@contextmanager
def running_nova(specs: list[dict[str, Any]], directory: Path) -> Iterator[int]:
    """Nova's ``MetadataRequestHandler`` on a loopback port, serving ``specs``."""
    python = openstack_python(NOVA)
    log = (directory / "nova.log").open("wb")
    process = subprocess.Popen(
        [str(python), "-W", "ignore", str(SIDE), "serve", str(_write_specs(specs, directory))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            process.wait()
            raise AssertionError(
                "Nova's metadata app did not start:\n" + (directory / "nova.log").read_text()
            )
        yield int(line)
    finally:
        stop_child(process)
        log.close()


@contextmanager
def running_nova_uwsgi(
    specs: list[dict[str, Any]], directory: Path, port: int, workers: int
) -> Iterator[subprocess.Popen[bytes]]:
    """Nova's metadata app under uwsgi on ``127.0.0.1:port`` with ``workers``
    pre-forked processes (the master builds the app once, before forking)."""
    python = openstack_python(NOVA, extras=(UWSGI,))
    log_path = directory / "nova-uwsgi.log"
    env = {"NOVA_SIDE_SPECS": str(_write_specs(specs, directory)), "PATH": "/usr/bin:/bin"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(python.with_name("uwsgi")), "--http-socket", f"127.0.0.1:{port}",
                "--master", "--processes", str(workers), "--wsgi-file", str(SIDE),
                "--need-app", "--disable-logging", "--die-on-term", "--listen", "1024",
                "--pythonpath", str(SIDE.parent),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        )  # fmt: skip

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError("Nova under uwsgi did not start:\n" + log_path.read_text())
        # uwsgi listens before its master has loaded the app: wait for an answer.
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return sock.recv(5) == b"HTTP/"
        except OSError:
            return False

    try:
        if not wait_until(answering, timeout=START_TIMEOUT_SECONDS):
            raise AssertionError(f"Nova under uwsgi did not answer on 127.0.0.1:{port}")
        yield process
    finally:
        stop_group(process)


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (its signal to stop), then wait, then kill."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def nova_config_drive(spec: dict[str, Any], directory: Path) -> dict[str, bytes]:
    """The files Nova's own ``ConfigDriveBuilder`` writes for ``spec``, by path."""
    python = openstack_python(NOVA)
    out = directory / "nova-drive"
    out.mkdir()
    subprocess.run(
        [
            str(python), "-W", "ignore", str(SIDE), "configdrive",
            str(_write_specs([spec], directory)), str(out),
        ],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )  # fmt: skip
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }
