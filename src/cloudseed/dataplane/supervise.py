"""Supervised processes: dnsmasq and the proxies, restarted on crash.

Each process runs under its own small supervisor (``python -m
cloudseed.dataplane.supervise``), started detached by ``sync``, so the data
plane keeps working between syncs without a resident agent. The supervisor
restarts its child when it exits (with a growing back-off, as Neutron's
ProcessMonitor respawns), forwards SIGHUP (dnsmasq re-reads its files), and
on SIGTERM stops the child with TERM, then KILL after the grace period.

On disk, per process, under ``<state_dir>/proc/<name>/``: ``spec.json`` (what
was started), ``supervisor.pid``, ``child.pid`` and ``log``. A pid counts
only while ``/proc/<pid>/cmdline`` still names the supervisor of that
process, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from cloudseed.dataplane.runner import Runner

SUPERVISOR_MODULE = "cloudseed.dataplane.supervise"
# Back-off between restarts of a crashing child: first and largest delay.
RESTART_DELAY_MIN_SECONDS = 0.2
RESTART_DELAY_MAX_SECONDS = 5.0
# A child that ran this long was healthy; its next crash restarts at once.
HEALTHY_UPTIME_SECONDS = 10.0
POLL_SECONDS = 0.1
# After SIGKILL, how long stop() waits for the kernel to finish the process.
KILL_WAIT_SECONDS = 2.0
# How long `start` waits for the supervisor to report its child's pid.
START_WAIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ProcessState:
    name: str
    directory: Path
    argv: tuple[str, ...]
    namespace: str
    supervisor_pid: int | None
    child_pid: int | None

    @property
    def is_running(self) -> bool:
        return self.supervisor_pid is not None


def process_root(state_dir: str) -> Path:
    return Path(state_dir) / "proc"


def observe(state_dir: str) -> dict[str, ProcessState]:
    """Every process the state directory knows, running or not."""
    root = process_root(state_dir)
    states: dict[str, ProcessState] = {}
    if not root.is_dir():
        return states
    for directory in sorted(root.iterdir()):
        spec = _read_json(directory / "spec.json")
        name = directory.name
        raw_argv = spec.get("argv")
        argv = tuple(str(a) for a in raw_argv) if isinstance(raw_argv, list) else ()
        supervisor = _read_pid(directory / "supervisor.pid")
        if supervisor is not None and not _is_supervisor(supervisor, name):
            supervisor = None
        child = _read_pid(directory / "child.pid") if supervisor is not None else None
        if child is not None and not Path(f"/proc/{child}").exists():
            child = None
        states[name] = ProcessState(name, directory, argv, str(spec.get("namespace", "")),
                                    supervisor, child)
    return states


def start(
    runner: Runner, state_dir: str, name: str, namespace: str, argv: Sequence[str], *,
    grace_seconds: float,
) -> int:
    directory = process_root(state_dir) / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "child.pid").unlink(missing_ok=True)
    (directory / "spec.json").write_text(json.dumps({"argv": list(argv), "namespace": namespace}))
    command = [sys.executable, "-m", SUPERVISOR_MODULE, "--name", name, "--dir", str(directory),
               "--grace", str(grace_seconds), "--netns", namespace, "--", *argv]
    process = runner.spawn(command, log_path=str(directory / "log"))
    (directory / "supervisor.pid").write_text(f"{process.pid}\n")
    # Return once the child exists, so status and doctor see a complete picture.
    deadline = time.monotonic() + START_WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if _read_pid(directory / "child.pid") is not None:
            break
        time.sleep(POLL_SECONDS / 5)
    return process.pid


def stop(runner: Runner, state: ProcessState, grace_seconds: float) -> None:
    """TERM the supervisor (it TERMs, then KILLs, its child); KILL both if it lingers."""
    if state.supervisor_pid is not None:
        runner.signal(state.supervisor_pid, signal.SIGTERM)
        _wait_gone(state.supervisor_pid, state.name, grace_seconds + 2.0)
        if _is_supervisor(state.supervisor_pid, state.name):
            runner.signal(state.supervisor_pid, signal.SIGKILL)
            # SIGKILL is delivered asynchronously: wait until it has taken effect.
            _wait_gone(state.supervisor_pid, state.name, KILL_WAIT_SECONDS)
    child = _read_pid(state.directory / "child.pid")
    if child is not None and Path(f"/proc/{child}").exists():
        runner.signal(child, signal.SIGKILL)
    shutil.rmtree(state.directory, ignore_errors=True)


def reload(runner: Runner, state: ProcessState) -> None:
    if state.supervisor_pid is not None:
        runner.signal(state.supervisor_pid, signal.SIGHUP)


def _wait_gone(pid: int, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        _reap(pid)
        if not _is_supervisor(pid, name) or time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)


def _reap(pid: int) -> None:
    """Collect our own exited child (sync started it), so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_supervisor(pid: int, name: str) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    args = raw.split(b"\0")
    return SUPERVISOR_MODULE.encode() in args and name.encode() in args


# -- the supervisor program -----------------------------------------------------


class _Supervisor:
    def __init__(self, name: str, directory: Path, grace: float, netns: str,
                 argv: list[str]) -> None:
        self.name = name
        self.directory = directory
        self.grace = grace
        self.netns = netns
        self.argv = argv
        self.runner = Runner()
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def on_term(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGHUP)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGHUP, self.on_hup)
        delay = RESTART_DELAY_MIN_SECONDS
        while not self.stopping:
            started = time.monotonic()
            self.child = self.runner.spawn(self.argv, netns=self.netns)
            (self.directory / "child.pid").write_text(f"{self.child.pid}\n")
            while not self.stopping and self.child.poll() is None:
                time.sleep(POLL_SECONDS)
            if self.stopping:
                break
            uptime = time.monotonic() - started
            delay = RESTART_DELAY_MIN_SECONDS if uptime > HEALTHY_UPTIME_SECONDS else min(
                delay * 2, RESTART_DELAY_MAX_SECONDS)
            print(f"{self.name}: exited with {self.child.returncode} after {uptime:.1f} s; "
                  f"restarting in {delay:.1f} s", file=sys.stderr, flush=True)
            deadline = time.monotonic() + delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        self._stop_child()
        return 0

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=SUPERVISOR_MODULE)
    parser.add_argument("--name", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--netns", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
    return _Supervisor(args.name, Path(args.dir), args.grace, args.netns, command).run()


if __name__ == "__main__":
    sys.exit(main())
