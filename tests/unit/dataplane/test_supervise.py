"""Supervised processes (no namespace needed): restart on crash, TERM then KILL, HUP forwarded."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from cloudseed.dataplane import supervise
from cloudseed.dataplane.runner import Runner

IGNORES_TERM = ("import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(60)\n")
COUNTS_HUPS = ("import signal, sys, time\n"
               "signal.signal(signal.SIGHUP, lambda *a: open(sys.argv[1], 'a').write('hup\\n'))\n"
               "time.sleep(60)\n")


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_crashed_child_is_restarted_and_stop_leaves_nothing(tmp_path: Path) -> None:
    runner = Runner()
    supervise.start(runner, str(tmp_path), "sleeper", "", ["sleep", "60"], grace_seconds=1.0)
    state = supervise.observe(str(tmp_path))["sleeper"]
    assert state.is_running
    first = state.child_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: supervise.observe(str(tmp_path))["sleeper"].child_pid
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
    assert wait_for(lambda: marker.exists() and "hup" in marker.read_text())
    supervise.stop(runner, state, 0.5)


def test_a_recycled_pid_is_not_mistaken_for_our_supervisor(tmp_path: Path) -> None:
    directory = tmp_path / "proc" / "ghost"
    directory.mkdir(parents=True)
    (directory / "spec.json").write_text('{"argv": ["x"], "namespace": ""}')
    (directory / "supervisor.pid").write_text(f"{os.getpid()}\n")  # pytest, not a supervisor
    assert not supervise.observe(str(tmp_path))["ghost"].is_running
