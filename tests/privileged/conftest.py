"""Real namespaces for data-plane tests, all inside one parent namespace per test.

``lab`` gives a test its own store (SQLite in tmp_path), a parent namespace
``cs<random>`` that holds the bridges, a state directory, and helpers to
register an inventory, sync, plug guests, run a real DHCP client (dhclient)
in them and fetch URLs from inside them. Whatever happens in the test, the
fixture tears everything down and then sweeps any namespace with its prefix.
Nothing here touches the host's interfaces, routes or firewall. ``chain``
adds the real ``cloudseed api`` and ``cloudseed agent`` (tests/support/real_chain.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support import real_chain
from tests.support.netns import sweep_namespaces
from tests.support.ports import free_port
from tests.support.real_chain import SECRET

from cloudseed.dataplane.guest import (
    acquire_lease,
    acquire_lease6,
    fetch_in_netns,
    release_lease,
)
from cloudseed.dataplane.host import DataplaneHost
from cloudseed.dataplane.plug import PlugRecord
from cloudseed.model import FixedIp, Ipv6Mode, Network, Port, Router, Server, Subnet
from cloudseed.settings import Settings, load_settings
from cloudseed.store import SqlStore, open_store

STANDIN_PROXY = Path(__file__).with_name("standin_proxy.py")
STATE_BASE = Path("/run/cloudseed-test")


def privileged_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: creates network namespaces, bridges and nftables rules"
    missing = [t for t in ("ip", "nft", "dnsmasq", "dhclient") if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


@pytest.fixture
def privileged() -> None:
    reason = privileged_skip_reason()
    if reason:
        pytest.skip(reason)


@dataclass
class Lab:
    tmp: Path
    root: str
    store: SqlStore
    overrides: dict[str, Any]
    lease_dirs: list[Path] = field(default_factory=list)

    # -- settings and host --------------------------------------------------

    def settings(self, **extra: Any) -> Settings:
        return load_settings(environ={}, overrides={**self.overrides, **extra})

    def host(self, **extra: Any) -> DataplaneHost:
        return DataplaneHost(self.settings(**extra), self.store)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real ``cloudseed`` command with this lab's settings."""
        env = {**os.environ, **self.env()}
        result = subprocess.run([sys.executable, "-m", "cloudseed.cli.main", *args],
                                capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"cloudseed {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in self.overrides.items():
            text = ",".join(value) if isinstance(value, tuple | list) else str(value)
            env["CLOUDSEED_" + key.replace(".", "_").upper()] = text
        return env

    # -- inventory ------------------------------------------------------------

    def network(self, name: str, cidr: str, gateway: str | None, *,
                router: str | None = None, ipv6_mode: Ipv6Mode | None = None
                ) -> tuple[str, str]:
        net_id, sub_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self.store.write() as w:
            w.put_network(Network(net_id, name))
            w.put_subnet(Subnet(sub_id, net_id, cidr, 6 if ":" in cidr else 4,
                                gateway_ip=gateway, ipv6_address_mode=ipv6_mode))
        if router:
            self.attach(router, sub_id)
        return net_id, sub_id

    def router(self, name: str) -> str:
        router_id = str(uuid.uuid4())
        with self.store.write() as w:
            w.put_router(Router(router_id, name))
        return router_id

    def attach(self, router_id: str, subnet_id: str) -> None:
        current = self.store.get_router(router_id)
        with self.store.write() as w:
            w.put_router(Router(router_id, current.name, (*current.subnet_ids, subnet_id)))

    def server(self, name: str, net_sub: tuple[str, str], ip: str, mac: str, *,
               project: str = "proj-1") -> str:
        with self.store.write() as w:
            server = w.put_server(Server(str(uuid.uuid4()), name, name, project))
            w.put_port(Port(str(uuid.uuid4()), net_sub[0], mac, (FixedIp(net_sub[1], ip),),
                            server_id=server.id))
        return server.id

    # -- guests ---------------------------------------------------------------

    def guest_name(self, name: str) -> str:
        return f"{self.root}-g-{name}"

    def plug(self, server_id: str, name: str) -> PlugRecord:
        return self.host().plug(server_id, netns=self.guest_name(name))

    def dhcp(self, guest: str) -> dict[str, Any]:
        """Run a real dhclient in ``guest``; return its eth0 addresses and routes."""
        directory = self.tmp / f"dhclient-{guest}"
        self.lease_dirs.append(directory)
        lease = acquire_lease(guest, directory)
        return {"addresses": list(lease.addresses), "routes": lease.routes, "log": lease.log}

    def dhcp6(self, guest: str) -> tuple[str, ...]:
        """Run a real ``dhclient -6`` in ``guest``; return its global IPv6 addresses."""
        directory = self.tmp / f"dhclient6-{guest}"
        self.lease_dirs.append(directory)
        return acquire_lease6(guest, directory)

    def fetch(self, guest: str, url: str, timeout: float = 5) -> tuple[int, str]:
        return fetch_in_netns(guest, url, timeout=timeout)

    def stop_dhclients(self) -> None:
        for directory in self.lease_dirs:
            release_lease(directory)


@pytest.fixture
def lab(privileged: None, tmp_path: Path) -> Iterator[Lab]:
    root = f"cs{uuid.uuid4().hex[:6]}"
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    # Outside pytest's tmp so a crashed run leaves one place to sweep;
    # test_dataplane checks a state directory inside a 0700 data dir too.
    state_dir = STATE_BASE / root
    overrides: dict[str, Any] = {
        "dataplane.root_netns": root,
        "dataplane.state_dir": str(state_dir),
        "dataplane.cloudseed_command": (sys.executable, str(STANDIN_PROXY)),
        "dataplane.stop_grace_seconds": 2.0,
        "agent.socket_path": str(tmp_path / "agent.sock"),
        "store.url": f"sqlite:///{tmp_path / 'store.db'}",
    }
    lab = Lab(tmp_path, root, store, overrides)
    try:
        yield lab
    finally:
        lab.stop_dhclients()
        try:
            lab.host().teardown()
        finally:
            sweep_namespaces(root)
            store.close()
            shutil.rmtree(state_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                STATE_BASE.rmdir()


@pytest.fixture
def chain(lab: Lab) -> Iterator[real_chain.Chain]:
    port = free_port()
    agent_socket = lab.tmp / "agent.sock"
    lab.overrides.pop("dataplane.cloudseed_command")  # the real `cloudseed proxy`
    lab.overrides.update({
        "agent.socket_path": str(agent_socket),
        "agent.api_url": f"http://127.0.0.1:{port}",
        "shared_secret": SECRET,
        # No admin listeners: doctor reads the same settings, so it asks the socket.
        "api.admin_host": "",
        "agent.metrics_port": -1,
    })
    chain = real_chain.Chain(lab, port, agent_socket)
    try:
        chain.start("api")
        chain.start("agent")
        yield chain
    finally:
        for name in list(chain.processes):
            chain.stop(name)


