"""Supervised processes: dnsmasq and the proxies, restarted on crash.

Each process runs under its own small supervisor (``python -m
cloudseed.dataplane.supervise``, a ``cloudseed.supervisor.Supervisor`` with
one child), started detached by ``sync``, so the data plane keeps working
between syncs without a resident agent. It restarts its child with the
project's one back-off, forwards SIGHUP (dnsmasq re-reads its files), and on
SIGTERM stops the child (TERM; haproxy: USR1, its soft stop), then KILLs it
after the grace period. The child dies with it (parent-death signal).

A proxy's listening sockets (``--socket``) are bound by the supervisor inside
the namespace and handed to each child it starts (``http.inherit``), so a
proxy restart, a config change or a switch between the built-in proxy and
haproxy refuses no connection: on SIGUSR2 the supervisor re-reads the
command from ``spec.json`` and starts it on the same sockets before the old
child is told to stop (``replace``). The shared front opens its listeners
itself, one set per namespace as namespaces come and go; started with
``--keep-sockets``, it hands each set up to this supervisor, which keeps a
copy and hands every kept set to the next front it starts (``http.inherit``
``SocketKeeper``), so a crash of the front refuses nothing either.

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
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudseed.dataplane.runner import Runner, in_netns
from cloudseed.http.inherit import SocketKeeper
from cloudseed.http.server import raise_open_files_limit
from cloudseed.log import configure_logging
from cloudseed.proxy.listen import ListenAddress, bind_sockets, enter_netns
from cloudseed.supervisor import STOP_GRACE_SECONDS, Child, Supervisor

SUPERVISOR_MODULE = "cloudseed.dataplane.supervise"
POLL_SECONDS = 0.1
LISTEN_BACKLOG = 1024
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
    sockets: tuple[str, ...] = ()
    keep_sockets: bool = False

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
        raw_sockets = spec.get("sockets")
        sockets = tuple(str(a) for a in raw_sockets) if isinstance(raw_sockets, list) else ()
        states[name] = ProcessState(name, directory, argv, str(spec.get("namespace", "")),
                                    supervisor, child, sockets, spec.get("keep_sockets") is True)
    return states


def start(
    runner: Runner, state_dir: str, name: str, namespace: str, argv: Sequence[str], *,
    grace_seconds: float, sockets: Sequence[str] = (), keep_sockets: bool = False,
) -> int:
    """Start the supervisor of ``name``; ``sockets``: ADDR:PORT it binds and hands over;
    ``keep_sockets``: the child hands up the listeners it opens, to be kept across its
    restarts."""
    directory = process_root(state_dir) / name
    directory.mkdir(parents=True, exist_ok=True)
    supervisor = _read_pid(directory / "supervisor.pid")
    if supervisor is None or not _is_supervisor(supervisor, name):
        _kill_stray_child(runner, directory)  # before the new one binds its ports
    (directory / "child.pid").unlink(missing_ok=True)
    _write_spec(directory, argv, namespace, sockets, keep_sockets)
    command = [sys.executable, "-m", SUPERVISOR_MODULE, "--name", name, "--dir", str(directory),
               "--grace", str(grace_seconds), "--netns", namespace,
               *(arg for address in sockets for arg in ("--socket", address)),
               *(["--keep-sockets"] if keep_sockets else []), "--", *argv]
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
    _kill_stray_child(runner, state.directory)
    shutil.rmtree(state.directory, ignore_errors=True)


def reload(runner: Runner, state: ProcessState) -> None:
    if state.supervisor_pid is not None:
        runner.signal(state.supervisor_pid, signal.SIGHUP)


def can_replace(state: ProcessState, namespace: str, sockets: Sequence[str],
                keep_sockets: bool = False) -> bool:
    """Whether ``replace`` can swap the command with no gap: same namespace, and the same
    sockets bound by the supervisor or (the shared front) sockets it keeps for the child."""
    held = (bool(sockets) and state.sockets == tuple(sockets)) or keep_sockets
    return (state.is_running and held and state.namespace == namespace
            and state.keep_sockets == keep_sockets)


def replace(runner: Runner, state: ProcessState, argv: Sequence[str]) -> None:
    """Run ``argv`` instead, on the same sockets: the new child starts before the old stops."""
    assert state.supervisor_pid is not None
    _write_spec(state.directory, argv, state.namespace, state.sockets, state.keep_sockets)
    before = state.child_pid
    runner.signal(state.supervisor_pid, signal.SIGUSR2)
    deadline = time.monotonic() + START_WAIT_SECONDS
    while time.monotonic() < deadline and _read_pid(state.directory / "child.pid") == before:
        time.sleep(POLL_SECONDS / 5)


def _write_spec(directory: Path, argv: Sequence[str], namespace: str,
                sockets: Sequence[str], keep_sockets: bool = False) -> None:
    scratch = directory / "spec.json.tmp"
    scratch.write_text(json.dumps({"argv": list(argv), "namespace": namespace,
                                   "sockets": list(sockets), "keep_sockets": keep_sockets}))
    scratch.replace(directory / "spec.json")


def _wait_gone(pid: int, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        _reap(pid)
        # An exiting process loses its cmdline before it is a zombie: wait for both.
        if (not _is_supervisor(pid, name) and not _exiting(pid)) or time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)


def _kill_stray_child(runner: Runner, directory: Path) -> None:
    """KILL the recorded child if it outlived its supervisor, and wait until it is gone.

    The parent-death signal does not survive a child's change of credentials
    (dnsmasq's ``--user``, haproxy's ``user``), so such a child outlives a
    SIGKILLed supervisor, holding its namespace's ports and leases. Only a
    process still running the recorded command counts: a recycled pid is left alone.
    """
    pid = _read_pid(directory / "child.pid")
    argv = _read_json(directory / "spec.json").get("argv")
    if pid is None or not isinstance(argv, list):
        return
    recorded = b"".join(str(arg).encode() + b"\0" for arg in argv)
    try:
        if Path(f"/proc/{pid}/cmdline").read_bytes() != recorded:
            return
    except OSError:
        return
    runner.signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return  # a zombie has closed its sockets already
        time.sleep(POLL_SECONDS / 5)


def _exiting(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return state != "Z" and not cmdline


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


def _stop_signal(argv: Sequence[str]) -> int:
    # haproxy's graceful stop is SIGUSR1 (finish what it has); SIGTERM drops it.
    return signal.SIGUSR1 if Path(argv[0]).name == "haproxy" else signal.SIGTERM


def _bind(netns: str, addresses: Sequence[str]) -> list[tuple[str, socket.socket]]:
    if netns:
        enter_netns(netns)  # single-threaded here: the sockets belong to the namespace
    sockets = bind_sockets([ListenAddress.parse(text) for text in addresses])
    for sock in sockets:
        sock.listen(LISTEN_BACKLOG)
    return [("proxy", sock) for sock in sockets]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=SUPERVISOR_MODULE)
    parser.add_argument("--name", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--grace", type=float, default=STOP_GRACE_SECONDS)
    parser.add_argument("--netns", default="")
    parser.add_argument("--socket", action="append", default=[], metavar="ADDR:PORT",
                        help="bind this listener in the namespace and hand it to the child")
    parser.add_argument("--keep-sockets", action="store_true",
                        help="keep the listeners the child hands up and hand them to its "
                             "next start")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
    configure_logging("info")
    directory = Path(args.dir)
    sockets = _bind(args.netns, args.socket)
    keeper = SocketKeeper() if args.keep_sockets else None
    if keeper is not None:
        raise_open_files_limit()  # a copy of every namespace's listeners

    def child(argv: Sequence[str]) -> Child:
        return Child(args.name, [*in_netns(args.netns), *argv], sockets=sockets,
                     stop_signal=_stop_signal(argv), keeper=keeper)

    supervisor = Supervisor([child(command)], name=f"dataplane {args.name}",
                            grace_seconds=args.grace)

    def record(started: Child) -> None:
        scratch = directory / "child.pid.tmp"  # never seen half-written
        scratch.write_text(f"{started.pid}\n")
        scratch.replace(directory / "child.pid")

    supervisor.on_start = record

    def replace_child() -> None:
        spec = _read_json(directory / "spec.json")
        fresh = spec.get("argv")
        if isinstance(fresh, list) and fresh:
            supervisor.replace(supervisor.children[0], child([str(a) for a in fresh]))

    supervisor.run_forever(handlers={
        signal.SIGHUP: lambda: supervisor.signal_all(signal.SIGHUP),
        signal.SIGUSR2: replace_child,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
