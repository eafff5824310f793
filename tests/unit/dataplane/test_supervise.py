"""Supervised processes (no namespace needed): restart on crash, TERM then KILL, HUP forwarded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import alive, ask, pid_server_script, wait_until

from cloudseed.dataplane import supervise
from cloudseed.dataplane.runner import Runner

IGNORES_TERM = ("import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(60)\n")
COUNTS_HUPS = ("import signal, sys, time\n"
               "signal.signal(signal.SIGHUP, lambda *a: open(sys.argv[1], 'a').write('hup\\n'))\n"
               "time.sleep(60)\n")



def test_crashed_child_is_restarted_and_stop_leaves_nothing(tmp_path: Path) -> None:
    runner = Runner()
    supervise.start(runner, str(tmp_path), "sleeper", "", ["sleep", "60"], grace_seconds=1.0)
    state = supervise.observe(str(tmp_path))["sleeper"]
    assert state.is_running
    first = state.child_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: supervise.observe(str(tmp_path))["sleeper"].child_pid
                    not in (None, first))
    state = supervise.observe(str(tmp_path))["sleeper"]
    supervise.stop(runner, state, 1.0)
    assert not alive(state.supervisor_pid)
    assert not alive(state.child_pid)
    assert supervise.observe(str(tmp_path)) == {}


def test_child_that_ignores_term_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    runner = Runner()
    supervise.start(runner, str(tmp_path), "stubborn", "", [sys.executable, "-c", IGNORES_TERM],
                    grace_seconds=0.5)
    state = supervise.observe(str(tmp_path))["stubborn"]
    time.sleep(0.3)  # let the child install its handler
    started = time.monotonic()
    supervise.stop(runner, state, 0.5)
    assert time.monotonic() - started < 5
    assert not alive(state.child_pid)
    assert not alive(state.supervisor_pid)


def test_hup_is_forwarded_to_the_child(tmp_path: Path) -> None:
    runner = Runner()
    marker = tmp_path / "hups"
    supervise.start(runner, str(tmp_path / "state"), "reloader", "",
                    [sys.executable, "-c", COUNTS_HUPS, str(marker)], grace_seconds=0.5)
    state = supervise.observe(str(tmp_path / "state"))["reloader"]
    time.sleep(0.3)
    supervise.reload(runner, state)
    assert wait_until(lambda: marker.exists() and "hup" in marker.read_text())
    supervise.stop(runner, state, 0.5)


def test_a_recycled_pid_is_not_mistaken_for_our_supervisor(tmp_path: Path) -> None:
    directory = tmp_path / "proc" / "ghost"
    directory.mkdir(parents=True)
    (directory / "spec.json").write_text('{"argv": ["x"], "namespace": ""}')
    (directory / "supervisor.pid").write_text(f"{os.getpid()}\n")  # pytest, not a supervisor
    assert not supervise.observe(str(tmp_path))["ghost"].is_running


def test_replace_swaps_the_command_on_the_same_socket_refusing_nothing(tmp_path: Path) -> None:
    """What a proxy switch (built-in <-> haproxy) or restart does: no gap."""
    runner = Runner()
    port = free_port()
    serve = [sys.executable, "-c", pid_server_script("proxy")]
    supervise.start(runner, str(tmp_path), "proxy-x", "", serve, grace_seconds=1.0,
                    sockets=[f"127.0.0.1:{port}"])
    state = supervise.observe(str(tmp_path))["proxy-x"]
    assert state.sockets == (f"127.0.0.1:{port}",)
    assert supervise.can_replace(state, "", state.sockets)
    assert not supervise.can_replace(state, "", ("127.0.0.1:1",))
    first = ask(port)
    # Killed outright, the child is restarted; meanwhile we wait in the backlog.
    os.kill(first, signal.SIGKILL)
    second = ask(port)
    assert second != first
    swapped = [*serve, "--the-other-implementation"]
    supervise.replace(runner, supervise.observe(str(tmp_path))["proxy-x"], swapped)
    state = supervise.observe(str(tmp_path))["proxy-x"]
    assert state.argv == tuple(swapped)
    assert state.child_pid not in (None, second)
    answers: set[int] = set()
    deadline = time.monotonic() + 10
    while state.child_pid not in answers and time.monotonic() < deadline:
        answers.add(ask(port))  # every connection answered, by the old or the new one
    assert state.child_pid in answers
    assert wait_until(lambda: not alive(second))
    supervise.stop(runner, state, 1.0)
    assert not alive(state.child_pid)


# A child that changed credentials (dnsmasq --user, haproxy's user) has lost its
# parent-death signal; clearing it by hand is the same for the kernel.
OUTLIVES_ITS_PARENT = ("import ctypes, time\n"
                       "ctypes.CDLL(None, use_errno=True).prctl(1, 0, 0, 0, 0)  # PDEATHSIG off\n"
                       "time.sleep(60)\n")


def test_a_child_that_outlived_its_killed_supervisor_is_stopped_by_the_next_start(
        tmp_path: Path) -> None:
    runner = Runner()
    argv = [sys.executable, "-c", OUTLIVES_ITS_PARENT]
    supervise.start(runner, str(tmp_path), "orphan", "", argv, grace_seconds=0.5)
    first = supervise.observe(str(tmp_path))["orphan"]
    assert first.supervisor_pid is not None
    assert first.child_pid is not None
    time.sleep(0.5)  # the child has cleared its parent-death signal
    os.kill(first.supervisor_pid, signal.SIGKILL)
    assert wait_until(lambda: not supervise.observe(str(tmp_path))["orphan"].is_running)
    assert alive(first.child_pid), "the child should have outlived its supervisor"
    supervise.start(runner, str(tmp_path), "orphan", "", argv, grace_seconds=0.5)
    assert not alive(first.child_pid)
    second = supervise.observe(str(tmp_path))["orphan"]
    assert second.child_pid not in (None, first.child_pid)
    supervise.stop(runner, second, 0.5)
    assert not alive(second.child_pid)


def test_a_recycled_child_pid_is_never_killed(tmp_path: Path) -> None:
    runner = Runner()
    supervise.start(runner, str(tmp_path), "gone", "", ["sleep", "60"], grace_seconds=0.5)
    state = supervise.observe(str(tmp_path))["gone"]
    assert state.supervisor_pid is not None
    os.kill(state.supervisor_pid, signal.SIGKILL)
    assert wait_until(lambda: not supervise.observe(str(tmp_path))["gone"].is_running)
    # The recorded pid now belongs to an unrelated process (another command line).
    with subprocess.Popen(["sleep", "61"]) as unrelated:
        (state.directory / "child.pid").write_text(f"{unrelated.pid}\n")
        supervise.start(runner, str(tmp_path), "gone", "", ["sleep", "60"], grace_seconds=0.5)
        assert unrelated.poll() is None
        supervise.stop(runner, supervise.observe(str(tmp_path))["gone"], 0.5)
        assert unrelated.poll() is None
        unrelated.kill()
