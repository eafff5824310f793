"""The shared front on loopback: scope from the listener, listeners added and removed live.

A real Echo agent on a Unix socket answers with what reached it. Listeners
here are all in the test's own namespace (entry namespace ""), one port per
scope; tests/privileged/test_shared_front.py does the same across real
namespaces.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.proxy import (
    Echo,
    LoopThread,
    echoed,
    header_values,
    http_request,
    loop_thread,
    unix_request,
)

from cloudseed.proxy.front import Front
from cloudseed.proxy.listen import ListenAddress, bind_sockets
from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
from cloudseed.proxy.relay import ProxyScope


class Rig:
    def __init__(self, lt: LoopThread, tmp: Path) -> None:
        self.lt, self.tmp = lt, tmp
        self.file = tmp / "listeners.json"
        self.agent_socket = tmp / "agent.sock"
        self.status = tmp / "status.sock"
        self.ports: dict[str, int] = {}

    def entry(self, owner: str, namespace: str = "") -> ScopedListeners:
        port = self.ports.setdefault(owner, free_port())
        scope = (ProxyScope(router_id=owner) if owner.startswith("r")
                 else ProxyScope(network_id=owner))
        return ScopedListeners(namespace, scope, (f"127.0.0.1:{port}",))

    def write(self, *entries: ScopedListeners) -> None:
        self.file.write_text(render_listener_set(entries))

    def get(self, owner: str) -> dict[str, object]:
        status, _, body = http_request("127.0.0.1", self.ports[owner], "GET", "/latest/meta-data/",
                                       [("X-Neutron-Router-ID", "guest-chosen")])
        assert status == 200
        return echoed(body)

    def health(self) -> dict[str, object]:
        status, _, body = unix_request(self.status, "GET", "/healthz")
        assert status == 200
        result: dict[str, object] = json.loads(body)
        return result


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Rig, Front]]:
    with loop_thread() as lt:
        rig = Rig(lt, tmp_path)
        agent = Echo("agent")
        lt.run(agent.listen_unix(rig.agent_socket))
        rig.write(rig.entry("r-one"), rig.entry("n-two"))
        front = Front(rig.file, str(rig.agent_socket))
        lt.run(front.start(str(rig.status)))
        try:
            yield rig, front
        finally:
            lt.run(front.stop())
            lt.run(agent.stop())


def test_each_listener_carries_its_own_scope_whatever_the_guest_sends(
    rig: tuple[Rig, Front],
) -> None:
    r, _ = rig
    one, two = r.get("r-one"), r.get("n-two")
    assert header_values(one, "x-neutron-router-id") == ["r-one"]
    assert header_values(one, "x-neutron-network-id") == []
    assert header_values(two, "x-neutron-network-id") == ["n-two"]
    assert header_values(two, "x-neutron-router-id") == []


def test_reload_adds_and_removes_listeners_while_others_keep_their_connections(
    rig: tuple[Rig, Front],
) -> None:
    r, front = rig
    kept = http.client.HTTPConnection("127.0.0.1", r.ports["r-one"], timeout=5)
    try:
        kept.request("GET", "/before")
        assert echoed(kept.getresponse().read())["path"] == "/before"
        r.write(r.entry("r-one"), r.entry("r-three"))  # n-two leaves, r-three arrives
        r.lt.run(front.reload())
        assert header_values(r.get("r-three"), "x-neutron-router-id") == ["r-three"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", r.ports["n-two"]), timeout=2).close()
        # The same keep-alive connection to r-one was never interrupted.
        kept.request("GET", "/after")
        after = echoed(kept.getresponse().read())
        assert after["path"] == "/after"
        assert header_values(after, "x-neutron-router-id") == ["r-one"]
    finally:
        kept.close()
    assert r.health()["namespaces"] == 2


def test_a_broken_file_keeps_every_listener_and_says_why(rig: tuple[Rig, Front]) -> None:
    r, front = rig
    r.file.write_text('{"version": 1, "listeners": [{"namespace": "x"}]}')
    r.lt.run(front.reload())
    assert header_values(r.get("n-two"), "x-neutron-network-id") == ["n-two"]
    health = r.health()
    assert health["status"] == "degraded"
    assert "listeners[0].listen" in str(health["reasons"])


def test_a_namespace_that_cannot_be_entered_is_named_and_the_others_served(
    rig: tuple[Rig, Front],
) -> None:
    r, front = rig
    r.write(r.entry("r-one"), r.entry("r-gone", namespace="cloudseed-test-no-such-ns"))
    r.lt.run(front.reload())
    assert header_values(r.get("r-one"), "x-neutron-router-id") == ["r-one"]
    health = r.health()
    assert health["failed"] == 1
    assert "no listener in cloudseed-test-no-such-ns" in str(health["reasons"])


def test_ipv4_and_ipv6_wildcards_on_one_port_both_listen() -> None:
    """`cloudseed proxy --listen 0.0.0.0:P --listen [::]:P` used to fail in listen()."""
    port = free_port()
    sockets = bind_sockets([ListenAddress("0.0.0.0", port), ListenAddress("::", port)])
    try:
        for sock in sockets:
            sock.listen(8)
        assert sockets[1].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for sock in sockets:
            sock.close()
    # Alone, [::] still takes IPv4 too (one dual-stack socket, as before).
    alone = bind_sockets([ListenAddress("::", port)])[0]
    try:
        assert alone.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    finally:
        alone.close()
