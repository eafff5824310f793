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
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cli import cloudseed_argv
from tests.support.hammer import Client, hammering, kill, only_cut_in_flight
from tests.support.ports import free_port
from tests.support.processes import wait_until
from tests.support.proxy import Echo, loop_thread

from cloudseed.dataplane import supervise
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS
from cloudseed.dataplane.runner import Runner
from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
from cloudseed.proxy.relay import ProxyScope


class Front:
    """``proxy-shared`` as ``dataplane sync`` starts it (``supervise.start``), on loopback."""

    def __init__(self, tmp: Path, agent_socket: Path) -> None:
        self.file = tmp / "listeners.json"
        self.state_dir = str(tmp / "state")
        self.directory = supervise.process_root(self.state_dir) / SHARED_FRONT_PROCESS
        self.agent_socket = agent_socket
        self.status_socket = tmp / "status.sock"
        self.ports: dict[str, int] = {}

    def write(self, *owners: str) -> None:
        self.file.write_text(render_listener_set(
            ScopedListeners("", ProxyScope(router_id=owner),
                            (f"127.0.0.1:{self.ports.setdefault(owner, free_port())}",))
            for owner in owners))

    def argv(self, *extra: str) -> list[str]:
        return [*cloudseed_argv(), *extra, "proxy", "--listeners-file", str(self.file),
                "--agent-socket", str(self.agent_socket),
                "--status-socket", str(self.status_socket)]

    def start(self) -> None:
        supervise.start(Runner(), self.state_dir, SHARED_FRONT_PROCESS, "", self.argv(),
                        grace_seconds=5.0, keep_sockets=True)

    def state(self) -> supervise.ProcessState:
        return supervise.observe(self.state_dir)[SHARED_FRONT_PROCESS]

    def stop(self) -> None:
        if self.directory.exists():
            supervise.stop(Runner(), self.state(), 5.0)

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
            front.stop()
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
        supervise.reload(Runner(), front.state())
        assert wait_until(lambda: front.answers("r-three"), 30), front.log()
        # Released: closed by the front and by its supervisor (else this would queue).
        assert wait_until(lambda: refuses(front.ports["r-two"]), 10)
        kills.append(kill(front.child(), front.child))
        assert wait_until(lambda: front.answers("r-three"), 30), front.log()
        assert refuses(front.ports["r-two"])
        assert run.each_answered_again(), front.log()
    only_cut_in_flight(run.outcomes, kills)


def test_a_new_command_line_swaps_the_front_on_its_kept_listeners(front: Front) -> None:
    front.write("r-one", "r-two")
    front.start()
    assert wait_until(lambda: front.answers("r-one") and front.answers("r-two"), 30), front.log()
    before = front.child()
    assert supervise.can_replace(front.state(), "", (), keep_sockets=True)
    # One client's answers take a second: the old front is draining one when it is told
    # to stop, and must be gone (its status socket free) before the new one starts.
    slow = Client("slow", "127.0.0.1", front.ports["r-one"], "/slow/1",
                  '"x-neutron-router-id", "r-one"')
    with hammering([*clients(front, "r-one", "r-two"), slow]) as run:
        time.sleep(0.5)  # the slow client's next request is half way
        # What sync does when the front's argv changes (an upgrade, another agent socket).
        supervise.replace(Runner(), front.state(), front.argv("--log-level", "info"))
        assert wait_until(lambda: front.child() not in (0, before), 30), front.log()
        assert run.each_answered_again(), front.log()
    # The old front drained what it had accepted before it stopped: nothing cut at all.
    assert [(o.client, o.problems) for o in run.outcomes if o.problems] == []
    assert front.state().argv == tuple(front.argv("--log-level", "info"))
    assert '"adopted":2' in front.log()
