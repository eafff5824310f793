"""Drop-in deployments with the REAL Neutron (29.0.0) and Nova (34.0.0) from PyPI.

The guest (a client bound to its loopback address) always talks to haproxy
running the configuration Neutron's own metadata driver generates for its
network. Behind it, one of the three deployments of docs/DEPLOYMENTS.md:

A. Neutron's metadata agent → cloudseed API  (cloudseed replaces nova-api-metadata)
B. cloudseed agent → cloudseed API           (cloudseed replaces Neutron's agent too)
C. cloudseed agent → Nova's metadata app     (cloudseed replaces only Neutron's agent)

Every document of the backend's own listings (two EC2 and two OpenStack
versions, binary, UTF-8 and Latin-1-range user-data) must arrive with the
backend's status, Content-Type and bytes; the password POST must store
through the chain. What a chain loses is asserted too, so docs/DEPLOYMENTS.md
cannot drift from what really happens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.differential.neutron_process import (
    neutron_haproxy_config,
    neutron_ports,
    running_haproxy,
    running_neutron_agent,
)
from tests.differential.nova_process import running_nova
from tests.differential.spec import PLAIN, RICH, STATIC_VENDORDATA, nova_spec
from tests.differential.walk import walk
from tests.support.api import (
    SECRET,
    Reply,
    api_settings,
    http_request,
    identity,
    running_api,
    store_view,
)
from tests.support.ports import free_port
from tests.support.proxy import loop_thread
from tests.support.samples import DHCP_NET

from cloudseed.agent.server import Agent
from cloudseed.model import ServerView
from cloudseed.settings import AgentSettings
from cloudseed.store import SqlStore, open_store

pytestmark = pytest.mark.openstack

GUESTS = {RICH.server.id: "127.0.0.5", PLAIN.server.id: "127.0.0.6"}
SEED = re.compile(rb'"random_seed": "[A-Za-z0-9+/=]*"')
START = ["/latest/", "/2009-04-04/", "/openstack/latest/", "/openstack/2013-04-04/"]


@dataclass
class Setup:
    store: SqlStore
    views: dict[str, ServerView]  # as stored, with the guests' loopback addresses
    tmp: Path


@pytest.fixture
def setup(tmp_path: Path, _migrated_sqlite_file: Path) -> Iterator[Setup]:
    path = tmp_path / "store.db"
    path.write_bytes(Path(_migrated_sqlite_file).read_bytes())
    with open_store(f"sqlite:///{path}") as store:
        views = {
            view.server.id: store_view(store, view, guest_ip=GUESTS[view.server.id])
            for view in (RICH, PLAIN)
        }
        yield Setup(store, views, tmp_path)


@contextmanager
def neutron_haproxy(setup: Setup, socket_path: Path, name: str = "haproxy") -> Iterator[int]:
    """haproxy with Neutron's config for the guests' network, to ``socket_path``."""
    port = free_port()
    state = setup.tmp / name
    state.mkdir()
    spec = {
        "socket": str(socket_path),
        "secret": SECRET,
        "network_id": DHCP_NET.id,
        "port": port,
        "state_path": str(state),
    }
    config = neutron_haproxy_config(spec, state)
    assert f"set-header X-Neutron-Network-ID {DHCP_NET.id}" in config
    with running_haproxy(config, port, state):
        yield port


@contextmanager
def cloudseed_agent(setup: Setup, api_port: int) -> Iterator[Path]:
    socket_path = setup.tmp / "cloudseed-agent" / "agent.sock"
    # The per-server rate limit is off: this test asks hundreds of paths.
    settings = AgentSettings(
        socket_path=str(socket_path),
        api_url=f"http://127.0.0.1:{api_port}",
        metrics_port=-1,
        rate_limit_enabled=False,
    )
    with loop_thread() as lt:
        agent = Agent(setup.store, settings, SECRET.encode())
        lt.run(agent.start())
        try:
            yield socket_path
        finally:
            lt.run(agent.stop())


def _masked(body: bytes) -> bytes:
    return SEED.sub(b'"random_seed": ""', body)


@dataclass
class Compared:
    paths: int = 0
    identical: int = 0
    # Lost in the chain exactly as Nova's answer is lost in the same place.
    lost_as_with_nova: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)  # (server, path)


def compare_documents(
    backend_port: int, chain_port: int, setup: Setup, nova_chain_port: int | None = None
) -> Compared:
    """Every document the backend lists, asked directly (signed) and through
    the chain (as the guest); both answers must be the same -- unless
    ``nova_chain_port`` (the same chain in front of the real Nova) loses
    that document the same way, which makes it the chain's loss, not ours."""
    result = Compared()
    for server_id, guest in GUESTS.items():
        who = identity(server_id, setup.views[server_id].server.project_id)

        def direct(path: str, who: dict[str, str] = who) -> list[Reply]:
            return [http_request(backend_port, path, who)]

        for path in walk(START, direct):
            expected = http_request(backend_port, path, who)
            got = http_request(chain_port, path, source=guest)
            result.paths += 1
            if nova_chain_port is not None and got.status != expected.status:
                with_nova = http_request(nova_chain_port, path, source=guest)
                assert (got.status, got.body) == (with_nova.status, with_nova.body), path
                result.lost_as_with_nova += 1
                result.lost.append((server_id, path))
                continue
            assert (got.status, got.headers.get("content-type")) == (
                expected.status,
                expected.headers.get("content-type"),
            ), path
            assert _masked(got.body) == _masked(expected.body), path
            result.identical += 1
    return result


def password_through(chain_port: int) -> list[tuple[int, bytes]]:
    """PLAIN's guest posts its password through the chain, then reads it."""
    guest = GUESTS[PLAIN.server.id]
    path = "/openstack/latest/password"
    steps = [
        http_request(chain_port, path, source=guest),
        http_request(chain_port, "/openstack/2012-08-10/password", method="POST",
                     body=b"x", source=guest),
        http_request(chain_port, path, method="POST", body="pw-ü☃".encode(), source=guest),
        http_request(chain_port, path, source=guest),
        http_request(chain_port, path, method="POST", body=b"again", source=guest),
    ]  # fmt: skip
    return [(r.status, r.body) for r in steps]


PASSWORD_FLOW: list[tuple[int, bytes | None]] = [
    (200, b""),
    (404, None),
    (200, b""),
    (200, "pw-ü☃".encode()),
    (409, None),
]


def _check_password_flow(steps: list[tuple[int, bytes]]) -> None:
    for (status, body), (want_status, want_body) in zip(steps, PASSWORD_FLOW, strict=True):
        assert status == want_status, steps
        if want_body is not None:
            assert body.strip(b"\r\n") == want_body, steps


def _check_password_flow_through_neutron(steps: list[tuple[int, bytes]], stored: str) -> None:
    """Through Neutron's agent a POST's body can be cut off: the agent reads a
    request with ONE recv(4096), and haproxy may write headers and body
    apart. An empty POST stores nothing (as Nova), so the guest is never
    locked out and nothing but what it sent is ever stored."""
    statuses = [status for status, _ in steps]
    assert statuses[:4] == [200, 404, 200, 200], steps
    assert steps[0][1].strip(b"\r\n") == b"", steps
    first = steps[3][1].strip(b"\r\n").decode()
    if first == "pw-ü☃":  # the first POST's body arrived: stored, the second refused
        assert (statuses[4], stored) == (409, first), steps
    else:  # it was cut: nothing stored, so the second POST could store its body
        assert first == "", steps
        assert statuses[4] == 200, steps
        assert stored in ("", "again"), stored


def _neutron_agent_to(setup: Setup, stack: ExitStack, backend_port: int, name: str) -> int:
    """Neutron's haproxy → Neutron's metadata agent → ``backend_port``."""
    directory = setup.tmp / name
    directory.mkdir()
    socket_path = directory / "agent.sock"
    agent_spec = {
        "socket": str(socket_path),
        "secret": SECRET,
        "nova_port": backend_port,
        "ports": neutron_ports(setup.views.values()),
    }
    stack.enter_context(running_neutron_agent(agent_spec, directory))
    return stack.enter_context(neutron_haproxy(setup, socket_path, f"{name}-haproxy"))


def test_a_neutron_agent_in_front_of_cloudseed_api(setup: Setup) -> None:
    settings = api_settings(vendordata_static_file=_vendor_file(setup.tmp))
    specs = [nova_spec(view, SECRET) for view in setup.views.values()]
    with running_api(setup.store, settings) as api, ExitStack() as stack:
        port = _neutron_agent_to(setup, stack, api.port, "to-cloudseed")
        # The reference: the same Neutron agent in front of the real Nova.
        nova_port = stack.enter_context(running_nova(specs, setup.tmp))
        nova_chain = _neutron_agent_to(setup, stack, nova_port, "to-nova")
        compared = compare_documents(api.port, port, setup, nova_chain)
        # Binary user-data is the one loss (Neutron's agent cannot re-encode
        # it as text, haproxy answers 502), and Nova loses it the same way.
        assert compared.lost == [
            (RICH.server.id, p)
            for p in (
                "/latest/user-data",
                "/2009-04-04/user-data",
                "/openstack/latest/user_data",
                "/openstack/2013-04-04/user_data",
            )
        ], compared
        steps = password_through(port)
        _check_password_flow_through_neutron(steps, setup.store.get_password(PLAIN.server.id))
        guest = GUESTS[RICH.server.id]
        # What this deployment loses (docs/DEPLOYMENTS.md): statuses Neutron's
        # agent does not know become haproxy's 502, and no IMDSv2 token.
        assert http_request(port, "/latest/api/token", source=guest).status == 502
        token = http_request(
            port,
            "/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            method="PUT",
            source=guest,
        )
        assert token.status != 200
    _report("A neutron-agent -> cloudseed-api", compared)


def test_b_cloudseed_agent_behind_neutrons_haproxy(setup: Setup) -> None:
    settings = api_settings(vendordata_static_file=_vendor_file(setup.tmp))
    with running_api(setup.store, settings) as api, ExitStack() as stack:
        socket_path = stack.enter_context(cloudseed_agent(setup, api.port))
        port = stack.enter_context(neutron_haproxy(setup, socket_path))
        compared = compare_documents(api.port, port, setup)
        _check_password_flow(password_through(port))
        # Nothing lost: the token flow works through Neutron's haproxy.
        guest = GUESTS[RICH.server.id]
        token = http_request(
            port,
            "/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            method="PUT",
            source=guest,
        )
        assert token.status == 200
        hostname = http_request(
            port,
            "/latest/meta-data/hostname",
            {"X-aws-ec2-metadata-token": token.body.decode()},
            source=guest,
        )
        assert hostname.status == 200
    _report("B haproxy -> cloudseed-agent -> cloudseed-api", compared)


def test_c_cloudseed_agent_in_front_of_the_real_nova(setup: Setup) -> None:
    specs = [nova_spec(view, SECRET) for view in setup.views.values()]
    with running_nova(specs, setup.tmp) as nova_port, ExitStack() as stack:
        socket_path = stack.enter_context(cloudseed_agent(setup, nova_port))
        port = stack.enter_context(neutron_haproxy(setup, socket_path))
        compared = compare_documents(nova_port, port, setup)
        _check_password_flow(password_through(port))
        # Nova has no session tokens, and the agent does not invent them.
        token = http_request(
            port,
            "/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            method="PUT",
            source=GUESTS[RICH.server.id],
        )
        assert token.status == 404
    _report("C haproxy -> cloudseed-agent -> nova", compared)


def _vendor_file(tmp: Path) -> str:
    import json

    path = tmp / "vendor.json"
    path.write_text(json.dumps(STATIC_VENDORDATA))
    return str(path)


def _report(chain: str, compared: Compared) -> None:
    import sys

    sys.stderr.write(
        f"drop-in {chain}: {compared.paths} paths, {compared.identical} identical, "
        f"{compared.lost_as_with_nova} lost exactly as with Nova\n"
    )
