"""Start Neutron's real metadata agent, and haproxy with Neutron's own config."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.differential.nova_process import stop_child
from tests.support.openstack_venv import NEUTRON, openstack_python

from cloudseed.model import ServerView

SIDE = Path(__file__).with_name("neutron_side.py")
START_TIMEOUT_SECONDS = 60.0


def _spec_file(spec: dict[str, Any], directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text(json.dumps(spec))
    return path


@contextmanager
def running_neutron_agent(
    spec: dict[str, Any], directory: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """neutron-metadata-agent on ``spec["socket"]``, forwarding to
    ``127.0.0.1:spec["nova_port"]`` with ``spec["secret"]``."""
    python = openstack_python(NEUTRON)
    log = (directory / "neutron-agent.log").open("wb")
    process = subprocess.Popen(
        [str(python), "-W", "ignore", str(SIDE), "agent",
         str(_spec_file(spec, directory, "neutron-agent.json"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            stop_child(process)
            raise AssertionError(
                "Neutron's metadata agent did not start:\n"
                + (directory / "neutron-agent.log").read_text()
            )
        yield process
    finally:
        stop_child(process)
        log.close()


def neutron_ports(views: Iterable[ServerView]) -> list[dict[str, Any]]:
    """What neutron-server knows: each guest's port (device and project)."""
    return [
        {
            "device_id": view.server.id,
            "project_id": view.server.project_id,
            "network_id": pv.port.network_id,
            "mac_address": pv.port.mac_address,
            "fixed_ips": [{"ip_address": f.ip_address} for f in pv.port.fixed_ips],
        }
        for view in views
        for pv in view.ports
    ]


def neutron_haproxy_config(spec: dict[str, Any], directory: Path) -> str:
    """The haproxy config Neutron's metadata driver writes for a network."""
    python = openstack_python(NEUTRON)
    done = subprocess.run(
        [str(python), "-W", "ignore", str(SIDE), "haproxy",
         str(_spec_file(spec, directory, "neutron-haproxy.json"))],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )  # fmt: skip
    return done.stdout.decode()


@contextmanager
def running_haproxy(
    config: str, port: int, directory: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Real haproxy with ``config``, in the foreground (``-db`` overrides
    the config's ``daemon``), until the block ends."""
    path = directory / "haproxy.cfg"
    path.write_text(config)
    log = (directory / "haproxy.log").open("wb")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "haproxy did not start:\n" + (directory / "haproxy.log").read_text()
                    ) from None
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
