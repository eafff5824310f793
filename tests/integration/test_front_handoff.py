"""The shared front's listeners outlive it: SIGKILL under load refuses nothing.

The real programs on loopback: the data plane's supervisor (``python -m
cloudseed.dataplane.supervise --keep-sockets``) runs ``cloudseed proxy
--listeners-file`` in front of an Echo agent. Clients hammer two scopes while
the front is SIGKILLed again and again, and while a reload swaps a scope:
every request is answered, each with its own listener's scope. A released
scope's port refuses afterwards (neither the front nor its supervisor keeps
it). tests/privileged/test_shared_front.py does the same from guests in real
namespaces.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cli import cloudseed_argv
from tests.support.hammer import Client, hammering, kill, only_cut_in_flight
from tests.support.ports import free_port
from tests.support.processes import stop_group, wait_until
from tests.support.proxy import Echo, loop_thread

from cloudseed.dataplane.supervise import SUPERVISOR_MODULE
from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
from cloudseed.proxy.relay import ProxyScope


class Front:
    def __init__(self, tmp: Path, agent_socket: Path) -> None:
        self.file = tmp / "listeners.json"
        self.directory = tmp / "proc"
        self.directory.mkdir()
        self.agent_socket = agent_socket
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, *owners: str) -> None:
        self.file.write_text(render_listener_set(
            ScopedListeners("", ProxyScope(router_id=owner),
                            (f"127.0.0.1:{self.ports.setdefault(owner, free_port())}",))
            for owner in owners))

    def start(self) -> None:
        log = open(self.directory / "log", "ab")  # noqa: SIM115 - kept by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR_MODULE, "--name", "proxy-shared", "--dir",
             str(self.directory), "--keep-sockets", "--", *cloudseed_argv(), "proxy",
             "--listeners-file", str(self.file), "--agent-socket", str(self.agent_socket)],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

    def child(self) -> int:
        try:
            return int((self.directory / "child.pid").read_text())
        except (OSError, ValueError):
            return 0

    def answers(self, owner: str) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports[owner], timeout=10)
            conn.request("GET", "/")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def log(self) -> str:
        return (self.directory / "log").read_text()[-4000:]


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "agent.sock"))
        front = Front(tmp_path, tmp_path / "agent.sock")
        try:
            yield front
        finally:
            if front.process is not None:
                stop_group(front.process)
            lt.run(agent.stop())


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def clients(front: Front, *owners: str) -> list[Client]:
    # The Echo agent answers with the request it got: the scope line the front added.
    return [Client(owner, "127.0.0.1", front.ports[owner], "/latest/meta-data/",
                   f'"x-neutron-router-id", "{owner}"') for owner in owners]


def test_killing_the_front_under_load_refuses_nothing(front: Front) -> None:
    front.write("r-one", "r-two")
    front.start()
    assert wait_until(lambda: front.answers("r-one") and front.answers("r-two"), 30), front.log()
    kills = []
    with hammering(clients(front, "r-one", "r-two")) as run:
        for _ in range(3):
            kills.append(kill(front.child(), front.child))
            assert run.each_answered_again(), front.log()
    cut = only_cut_in_flight(run.outcomes, kills)
    print(f"\n3 kills under load: {[(o.client, o.ok) for o in run.outcomes]}, "
          f"{cut} requests in flight cut, nothing refused")
    assert front.log().count('"adopted":2') == 3


def test_a_reload_then_a_kill_keeps_only_what_is_still_wanted(front: Front) -> None:
    front.write("r-one", "r-two")
    front.start()
    assert wait_until(lambda: front.answers("r-one") and front.answers("r-two"), 30), front.log()
    kills = []
    with hammering(clients(front, "r-one")) as run:
        front.write("r-one", "r-three")  # r-two leaves, r-three arrives
        assert front.process is not None
        os.kill(front.process.pid, signal.SIGHUP)
        assert wait_until(lambda: front.answers("r-three"), 30), front.log()
        # Released: closed by the front and by its supervisor (else this would queue).
        assert wait_until(lambda: refuses(front.ports["r-two"]), 10)
        kills.append(kill(front.child(), front.child))
        assert wait_until(lambda: front.answers("r-three"), 30), front.log()
        assert refuses(front.ports["r-two"])
        assert run.each_answered_again(), front.log()
    only_cut_in_flight(run.outcomes, kills)
