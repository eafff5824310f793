"""Supervised processes (no namespace needed): restart on crash, TERM then KILL, HUP forwarded."""

from __future__ import annotations

import os
import signal
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
