"""The one supervisor: back-off, TERM then KILL, handed-over sockets, no orphans, one instance."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.processes import alive, ask, descendants, pid_server_script, wait_until

from cloudseed.errors import ConfigError
from cloudseed.http import inherit
from cloudseed.http.inherit import HANDOFF, SocketKeeper, open_unix, socket_holder
from cloudseed.supervisor import (
    HEALTHY_UPTIME_SECONDS,
    RESTART_DELAY_MAX_SECONDS,
    RESTART_DELAY_MIN_SECONDS,
    Backoff,
    Child,
    InstanceRunning,
    Supervisor,
    hold_instance_lock,
)

SERVES_FD3 = pid_server_script("web")
IGNORES_TERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"


def _polled(supervisor: Supervisor) -> bool:
    supervisor.poll()
    return True


def test_backoff_doubles_while_failing_and_resets_after_a_healthy_run() -> None:
    backoff = Backoff()
    delays = [backoff.after_exit(0.1) for _ in range(10)]
    assert delays[0] == RESTART_DELAY_MIN_SECONDS
    assert delays[1] == 2 * RESTART_DELAY_MIN_SECONDS
    assert delays[-1] == RESTART_DELAY_MAX_SECONDS
    assert backoff.after_exit(HEALTHY_UPTIME_SECONDS) == RESTART_DELAY_MIN_SECONDS


def test_child_is_restarted_and_its_socket_never_refuses(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    child = Child("web", [sys.executable, "-c", SERVES_FD3], sockets=[("web", listener)])
    supervisor = Supervisor([child], name="test")
    supervisor.start()
    try:
        first = ask(port)
        assert first == child.pid
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: not alive(first))
        # Nobody accepts now; the kernel queues us until the replacement does.
        conn = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        conn.sendall(b"hi")
        assert wait_until(lambda: _polled(supervisor) and child.pid not in (0, first))
        assert int(conn.recv(100)) == child.pid
        conn.close()
        assert child.restarts == 1
    finally:
        supervisor.stop()
        listener.close()


def test_replace_starts_the_new_child_before_the_old_one_stops() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    old = Child("web", [sys.executable, "-c", SERVES_FD3], sockets=[("web", listener)])
    supervisor = Supervisor([old], name="test")
    supervisor.start()
    try:
        old_pid = ask(port)
        fresh = Child("web", [sys.executable, "-c", SERVES_FD3])
        supervisor.replace(old, fresh)
        assert fresh.sockets == old.sockets
        answers = set()
        deadline = time.monotonic() + 10
        while fresh.pid not in answers and time.monotonic() < deadline:
            answers.add(ask(port))  # every connection answered, by one or the other
            supervisor.poll()
        assert fresh.pid in answers
        assert wait_until(lambda: _polled(supervisor) and not alive(old_pid))
        assert supervisor.children == [fresh]
    finally:
        supervisor.stop()
        listener.close()


# Opens its own listener the first time and hands it up under "k"; later starts
# adopt the kept one (binding again would fail: the kept copy holds the port).
# "release" makes it give the socket up for good.
HANDS_UP_ITS_SOCKET = textwrap.dedent("""
    import os, socket, sys, time
    from cloudseed.http.inherit import Handoff
    handoff = Handoff.inherited()
    assert handoff is not None, "no handoff channel"
    kept = handoff.adopt("k")
    if kept:
        [sock] = kept
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", int(sys.argv[1])))
        handoff.keep([("k", [sock])])
    sock.listen(16)
    while True:
        conn, _ = sock.accept()
        if conn.recv(100) == b"release":
            handoff.release(["k"])
            sock.close()
            conn.sendall(b"0")
            conn.close()
            time.sleep(60)
        conn.sendall(str(os.getpid()).encode())
        conn.close()
""")


def _listening(port: int) -> bool:
    try:
        return ask(port) > 0
    except ConnectionRefusedError:
        return False


@dataclass
class HandingUp:
    supervisor: Supervisor
    child: Child
    keeper: SocketKeeper
    port: int


@pytest.fixture
def handing_up() -> Iterator[HandingUp]:
    """A supervised child that has opened its listener and handed it up."""
    port = free_port()
    keeper = SocketKeeper()
    child = Child("front", [sys.executable, "-c", HANDS_UP_ITS_SOCKET, str(port)], keeper=keeper)
    supervisor = Supervisor([child], name="test")
    supervisor.start()
    try:
        assert wait_until(lambda: _listening(port))  # the first child binds it itself
        assert ask(port) == child.pid
        supervisor.poll()
        assert list(keeper.held) == ["k"]
        yield HandingUp(supervisor, child, keeper, port)
    finally:
        supervisor.stop()


def test_a_socket_handed_up_by_the_child_outlives_it_and_goes_to_the_next_one(
    handing_up: HandingUp,
) -> None:
    supervisor, child, port = handing_up.supervisor, handing_up.child, handing_up.port
    for _ in range(3):
        before = child.pid
        os.kill(before, signal.SIGKILL)
        assert wait_until(lambda: not alive(before))  # noqa: B023 - waited on at once
        # Nobody accepts now, and the socket's opener is dead: the kept copy queues us.
        conn = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        conn.sendall(b"hi")
        assert wait_until(lambda: _polled(supervisor) and child.pid not in (0, before))  # noqa: B023
        assert int(conn.recv(100)) == child.pid
        conn.close()
    assert child.restarts == 3
    supervisor.stop()
    assert not handing_up.keeper.held  # stopped: nothing kept open


def test_a_released_socket_is_closed_by_the_supervisor_too(handing_up: HandingUp) -> None:
    supervisor, port = handing_up.supervisor, handing_up.port
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as conn:
        conn.sendall(b"release")
        assert conn.recv(100) == b"0"
    assert wait_until(lambda: _polled(supervisor) and not handing_up.keeper.held)
    # Neither the child nor its supervisor listens there any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10.0)


def test_more_kept_sockets_than_one_exec_can_name_are_closed_not_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keeper = SocketKeeper()
    kept = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    keeper.held = {f"key{n}": [sock] for n, sock in enumerate(kept)}
    monkeypatch.setattr(inherit, "MAX_FDNAMES_BYTES", 2 * len("key0:"))
    handed = keeper.for_start()
    try:
        # Only the channel: the child binds its own, which it can, as these are closed.
        assert [name for name, _ in handed] == [HANDOFF]
        assert all(sock.fileno() == -1 for sock in kept)
    finally:
        keeper.close()


def test_stop_is_term_then_kill_after_the_grace_period() -> None:
    child = Child("stubborn", [sys.executable, "-c", IGNORES_TERM])
    supervisor = Supervisor([child], name="test", grace_seconds=0.5)
    supervisor.start()
    pid = child.pid
    time.sleep(0.5)  # let it install its SIG_IGN
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started >= 0.5  # TERM was ignored: the grace ran out
    assert not alive(pid)


SUPERVISES_A_SLEEPER = textwrap.dedent("""
    import sys
    from cloudseed.supervisor import Child, Supervisor
    Supervisor([Child("sleeper", ["sleep", "60"])], name="test").run_forever()
""")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT,
                                    signal.SIGHUP])
def test_no_child_outlives_its_supervisor(signum: int) -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISES_A_SLEEPER])
    try:
        assert wait_until(lambda: descendants(supervisor.pid))
        children = descendants(supervisor.pid)
        supervisor.send_signal(signum)
        supervisor.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in children))
    finally:
        supervisor.kill()
        supervisor.wait()


def test_second_instance_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "serve.pid"
    fd = hold_instance_lock(lock, "cloudseed serve", "kill {pid}")
    try:
        with pytest.raises(InstanceRunning) as refused:
            hold_instance_lock(lock, "cloudseed serve", "kill {pid}")
        assert f"pid {os.getpid()}" in str(refused.value)
        assert f"kill {os.getpid()}" in str(refused.value)
    finally:
        os.close(fd)
    os.close(hold_instance_lock(lock, "cloudseed serve", "kill {pid}"))  # free again


def test_a_live_unix_socket_is_never_unlinked(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    live = open_unix(path)
    try:
        with pytest.raises(ConfigError) as refused:
            open_unix(path, setting="agent.socket_path")
        assert f"process {os.getpid()}" in refused.value.message
        assert "agent.socket_path" in refused.value.message
        assert socket_holder(path) == os.getpid()  # still ours, still answering
    finally:
        live.close()
    # Now nobody accepts there: a stale file, replaced.
    assert socket_holder(path) is None
    open_unix(path).close()
