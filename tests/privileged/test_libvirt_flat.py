"""The flat libvirt mode, as docs/OPERATIONS.md configures it, with real namespaces.

A namespace stands in for the libvirt host: a bridge in the role of virbr0
holds the network's gateway address and 169.254.169.254/32, and the metadata
API runs there in direct mode on port 80 — no agent, no proxy, no metadata
namespace. Guests are veths on the bridge in namespaces of their own, with
the addresses libvirt's DHCP host entries pin. Servers come from
``cloudseed libvirt sync`` reading libvirt's test driver, and a guest's real
HTTP request is answered with its own domain's data, found by source address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.control import running_control
from tests.support.libvirt_node import (
    DB_MAC,
    DB_XML,
    WEB_IP,
    WEB_MAC,
    WEB_UUID,
    WEB_XML,
    write_node,
)

from cloudseed.cli.main import main
from cloudseed.dataplane.guest import fetch_in_netns
from cloudseed.dataplane.runner import Runner
from cloudseed.store import open_store

METADATA = "http://169.254.169.254"
GATEWAY = "192.168.122.1"
API_START_SECONDS = 30.0


@dataclass
class FlatHost:
    host_ns: str
    runner: Runner

    def guest(self, name: str, mac: str, ip: str) -> str:
        """A guest namespace whose NIC (a veth) is on the bridge, as a tap would be."""
        netns = f"{self.host_ns}-{name}"
        run = self.runner
        run.ip("netns", "add", netns)
        run.ip("link", "add", f"{name}-h", "type", "veth", "peer", "name", "eth0",
               "netns", netns, netns=self.host_ns)
        run.ip("link", "set", f"{name}-h", "master", "vbr0", "up", netns=self.host_ns)
        run.ip("link", "set", "eth0", "address", mac, "up", netns=netns)
        run.ip("link", "set", "lo", "up", netns=netns)
        run.ip("addr", "add", f"{ip}/24", "dev", "eth0", netns=netns)
        run.ip("route", "add", "default", "via", GATEWAY, netns=netns)
        return netns


@pytest.fixture
def flat_host(privileged: None) -> Iterator[FlatHost]:
    runner = Runner()
    host_ns = f"csfl{uuid.uuid4().hex[:6]}"
    try:
        runner.ip("netns", "add", host_ns)
        runner.ip("link", "set", "lo", "up", netns=host_ns)
        # The documented set-up: the metadata address on libvirt's bridge.
        runner.ip("link", "add", "vbr0", "type", "bridge", netns=host_ns)
        runner.ip("addr", "add", f"{GATEWAY}/24", "dev", "vbr0", netns=host_ns)
        runner.ip("addr", "add", "169.254.169.254/32", "dev", "vbr0", netns=host_ns)
        runner.ip("link", "set", "vbr0", "up", netns=host_ns)
        yield FlatHost(host_ns, runner)
    finally:
        for name in runner.namespaces():
            if name == host_ns or name.startswith(f"{host_ns}-"):
                runner.kill_namespace_processes(name)
                runner.delete_namespace(name)


def _wait_for_api(guest: str, api: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + API_START_SECONDS
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise AssertionError(f"cloudseed api exited with {api.returncode}")
        status, _ = fetch_in_netns(guest, f"{METADATA}/", timeout=2)
        if status:
            return
        time.sleep(0.2)
    raise AssertionError("cloudseed api did not answer on 169.254.169.254:80")


def test_a_libvirt_guest_on_the_bridge_gets_its_own_metadata_by_source_address(
    flat_host: FlatHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(store_url) as store, running_control(store) as control:
        monkeypatch.setenv("CLOUDSEED_URL", control.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", control.token)
        assert main(["libvirt", "sync", "--uri", write_node(tmp_path, WEB_XML, DB_XML)]) == 0

    web = flat_host.guest("web1", WEB_MAC, WEB_IP)
    # db1 has no pinned address in libvirt: it is not identified by one.
    db = flat_host.guest("db1", DB_MAC, "192.168.122.150")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CLOUDSEED_STORE_URL": store_url,
        "CLOUDSEED_API_MODE": "direct",
        "CLOUDSEED_API_HOST": "169.254.169.254",
        "CLOUDSEED_API_PORT": "80",
    }
    api = subprocess.Popen(
        ["ip", "netns", "exec", flat_host.host_ns, sys.executable, "-m", "cloudseed.cli.main",
         "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_api(web, api)
        status, body = fetch_in_netns(web, f"{METADATA}/openstack/latest/meta_data.json")
        assert status == 200, body
        meta = json.loads(body)
        assert meta["uuid"] == WEB_UUID
        assert meta["name"] == "web1"
        status, body = fetch_in_netns(web, f"{METADATA}/latest/meta-data/mac")
        assert (status, body) == (200, WEB_MAC)
        status, _ = fetch_in_netns(db, f"{METADATA}/openstack/latest/meta_data.json")
        assert status == 404
    finally:
        api.terminate()
        api.wait(timeout=30)
