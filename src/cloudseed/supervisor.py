"""The one process supervisor: start children, restart them, stop them, never orphan them.

Every tier that runs other processes uses this module: ``cloudseed serve``
(one child per tier), the data plane's per-process supervisor (dnsmasq and
the namespace proxies, ``dataplane.supervise``), the haproxy wrapper of
``cloudseed proxy`` (``proxy.haproxy.HaproxyProcess``) and the API's
pre-fork master (``api.service``, which forks rather than execs, and uses
the policy and ``die_with_parent`` from here).

One policy for all of them:

- restart after a back-off that starts at ``RESTART_DELAY_MIN_SECONDS``,
  doubles up to ``RESTART_DELAY_MAX_SECONDS`` and resets once a child has
  stayed up ``HEALTHY_UPTIME_SECONDS`` (Neutron's ProcessMonitor respawns the
  same way). The first restart is almost immediate: the child's listening
  sockets stay open here, so clients wait in the backlog meanwhile;
- stop with the child's stop signal (SIGTERM; SIGUSR1, haproxy's soft stop,
  for haproxy), then SIGKILL after ``STOP_GRACE_SECONDS``;
- every child asks the kernel for a signal when we die (PR_SET_PDEATHSIG) and
  exits if we are already gone, so not even a SIGKILL of the supervisor
  leaves a child behind. The kernel sends that signal when the *thread* that
  forked the child exits, so children are only ever started from the
  supervisor's main thread;
- listening sockets are opened by the supervisor and handed to the child as
  systemd does (fds 3.., ``LISTEN_FDS``/``LISTEN_FDNAMES``/``LISTEN_PID``;
  see ``http.inherit``), so they outlive any one child; a child whose
  listeners come and go (the shared front) hands each new one up instead
  (``Child.keeper``), and gets every one it kept back at its next start;
- every log line names the supervisor and the child (``tier``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloudseed.http.inherit import SocketKeeper
from cloudseed.log import get_logger

log = get_logger("supervisor")

RESTART_DELAY_MIN_SECONDS = 0.1
RESTART_DELAY_MAX_SECONDS = 5.0
HEALTHY_UPTIME_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05
# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Dispositions a child must not inherit as "ignored" (ignored survives exec).
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT,
                  signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)
LISTEN_FDS_START = 3


def name_process(name: str) -> None:
    """What ``ps`` and ``/proc/PID/comm`` show for this process (15 characters kept),
    so an operator can tell a forked helper from the workers beside it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """In a freshly forked child: get ``signum`` when the parent dies; exit if it has.

    The check after the prctl closes the race where the parent died between
    fork and prctl (the child would already have been re-parented).
    """
    _prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent_pid:
        os._exit(1)


def become_subreaper() -> None:
    """Adopt our orphaned grandchildren (an API worker whose master died), so
    they are ours to reap and to stop."""
    with contextlib.suppress(OSError):
        _prctl(PR_SET_CHILD_SUBREAPER, 1)


class Backoff:
    """The restart delay: doubles while a child keeps failing, resets once it was healthy."""

    def __init__(self) -> None:
        self.delay = 0.0

    def after_exit(self, uptime_seconds: float) -> float:
        if uptime_seconds >= HEALTHY_UPTIME_SECONDS or self.delay == 0.0:
            self.delay = RESTART_DELAY_MIN_SECONDS
        else:
            self.delay = min(self.delay * 2, RESTART_DELAY_MAX_SECONDS)
        return self.delay


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    sockets: Sequence[tuple[str, socket.socket]] = (),
    death_signal: int = signal.SIGTERM,
    stdout: int | None = None,
) -> int:
    """fork + exec ``argv`` with ``sockets`` as fds 3.. and the parent-death signal set."""
    parent = os.getpid()
    full_env = {k: v for k, v in env.items() if not k.startswith("LISTEN_")}
    if sockets:
        full_env["LISTEN_FDS"] = str(len(sockets))
        full_env["LISTEN_FDNAMES"] = ":".join(name for name, _ in sockets)
    fds = [sock.fileno() for _, sock in sockets]
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: only async-signal-safe-ish work until exec
        die_with_parent(parent, death_signal)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for signum in _RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        if stdout is not None:
            os.dup2(stdout, 1)
            os.dup2(stdout, 2)
        # Move the sockets clear of 3..3+n first, then into place.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, LISTEN_FDS_START + len(fds)) for fd in fds]
        for index, fd in enumerate(high):
            os.dup2(fd, LISTEN_FDS_START + index, inheritable=True)
            os.close(fd)
        if sockets:
            full_env["LISTEN_PID"] = str(os.getpid())
        os.execvpe(argv[0], list(argv), full_env)  # noqa: S606 - argv lists, never a shell
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"cannot start {argv[0]}: {exc}\n".encode())
    os._exit(127)


def exit_code(status: int) -> int:
    """waitpid status → returncode as subprocess reports it (negative = signal)."""
    return os.waitstatus_to_exitcode(status)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    # Listening sockets handed over at every start; they stay open here.
    sockets: Sequence[tuple[str, socket.socket]] = ()
    stop_signal: int = signal.SIGTERM
    # Sockets the child opened itself and handed up to us (``http.inherit``):
    # handed back, with ``sockets``, at every start.
    keeper: SocketKeeper | None = None
    pid: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    returncode: int | None = None
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def running(self) -> bool:
        return self.pid != 0


class Supervisor:
    """Runs ``children``; call ``poll`` regularly (``run_forever`` does)."""

    def __init__(self, children: Sequence[Child], *, name: str = "serve",
                 base_env: Mapping[str, str] | None = None, stdout: int | None = None,
                 grace_seconds: float = STOP_GRACE_SECONDS, adopt_orphans: bool = False) -> None:
        self.name = name
        self.grace_seconds = grace_seconds
        # Only a process that owns all its children (serve, a subreaper) reaps and
        # stops any child; embedded elsewhere (tests, demo) it touches only its own.
        self.adopt_orphans = adopt_orphans
        self.children = list(children)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.stdout = stdout
        self.stopping = False
        # Children being replaced: pid → (name, when to SIGKILL); reaped, never restarted.
        self.retiring: dict[int, tuple[str, float]] = {}
        self.on_start: Callable[[Child], None] | None = None

    def _log(self, level: int, message: str, child: str, **fields: object) -> None:
        log.log(level, message, extra={"fields": {"supervisor": self.name, "tier": child,
                                                  **fields}})

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        sockets = [*child.sockets, *(child.keeper.for_start() if child.keeper else ())]
        try:
            child.pid = spawn(child.argv, {**self.base_env, **child.env}, sockets=sockets,
                              stdout=self.stdout)
        finally:
            if child.keeper is not None:
                child.keeper.started()
        child.started_at = time.monotonic()
        child.returncode = None
        self._log(20, "started", child.name, pid=child.pid, restarts=child.restarts)
        if self.on_start is not None:
            self.on_start(child)

    def _ours(self) -> list[int]:
        """Live children this supervisor answers for."""
        mine = {c.pid for c in self.children if c.pid} | set(self.retiring)
        return [pid for pid in _our_children() if self.adopt_orphans or pid in mine]

    def _exited(self) -> Iterator[tuple[int, int]]:
        if self.adopt_orphans:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                yield pid, status
        for pid in [*(c.pid for c in self.children if c.pid), *self.retiring]:
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    yield done, status

    def _reap(self) -> None:
        """Collect our exited children: known, retiring and (as serve) adopted ones."""
        by_pid = {c.pid: c for c in self.children if c.pid}
        for pid, status in list(self._exited()):
            child = by_pid.get(pid)
            if child is None:
                name, _ = self.retiring.pop(pid, ("", 0.0))
                if name:
                    self._log(20, "stopped", name, pid=pid, code=exit_code(status))
                continue
            child.pid = 0
            child.returncode = exit_code(status)
            if self.stopping:
                continue
            delay = child.backoff.after_exit(time.monotonic() - child.started_at)
            child.restart_at = time.monotonic() + delay
            self._log(30, "exited; restarting", child.name, pid=pid, code=child.returncode,
                      restart_in_s=delay)

    def poll(self) -> None:
        """Reap exited children and restart those whose back-off has passed."""
        self._reap()
        for child in self.children:
            if child.keeper is not None:
                child.keeper.collect()
        now = time.monotonic()
        for pid, (name, kill_at) in list(self.retiring.items()):
            if now >= kill_at:
                self._log(30, "did not stop in time; killing", name, pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.retiring[pid] = (name, float("inf"))
        for child in self.children:
            if not child.pid and not self.stopping and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def replace(self, child: Child, fresh: Child) -> None:
        """Start ``fresh`` (same sockets) before asking ``child`` to stop: no gap.

        A child that hands its sockets up is stopped first instead: it opens
        things two of it cannot share (the front's status socket), and the
        listeners kept here queue its clients until ``fresh`` accepts.
        """
        index = self.children.index(child)
        fresh.sockets = fresh.sockets or child.sockets
        fresh.keeper = fresh.keeper or child.keeper
        if fresh.keeper is not None and child.pid:
            self._stop_now(child)
        self._spawn(fresh)
        self.children[index] = fresh
        if child.pid:
            self.retiring[child.pid] = (child.name, time.monotonic() + self.grace_seconds)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, child.stop_signal)
            self._log(20, "replaced", child.name, old_pid=child.pid, pid=fresh.pid)

    def _stop_now(self, child: Child) -> None:
        """Stop signal, wait up to the grace period, SIGKILL; reaped before we return."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, child.stop_signal)
        deadline = time.monotonic() + self.grace_seconds
        with contextlib.suppress(ChildProcessError):
            while not os.waitpid(child.pid, os.WNOHANG)[0]:
                if time.monotonic() >= deadline:
                    self._log(30, "did not stop in time; killing", child.name, pid=child.pid)
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
                    break
                time.sleep(POLL_SECONDS)
        self._log(20, "stopped", child.name, pid=child.pid)
        child.pid = 0

    def signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def run_forever(self, *, handlers: Mapping[int, Callable[[], None]] | None = None,
                    until: Callable[[], bool] | None = None) -> None:
        """Supervise until SIGTERM, SIGINT or SIGHUP (or ``until()``), then stop everything.

        ``handlers`` replace the default (stop) for the signals they name.
        """
        extra = dict(handlers or {})
        watched = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, *extra}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            if not any(c.pid for c in self.children):
                self.start()
            while not self.stopping:
                info = signal.sigtimedwait(watched, POLL_SECONDS * 4)
                if info is not None and info.si_signo in extra:
                    extra[info.si_signo]()
                elif info is not None and info.si_signo != signal.SIGCHLD:
                    self._log(20, "stopping", "*", signal=signal.Signals(info.si_signo).name)
                    self.stopping = True
                if until is not None and until():
                    self.stopping = True
                self.poll()
        finally:
            self.stop()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop signal to every child (and adopted orphan), SIGKILL after the grace period."""
        if grace_seconds is None:
            grace_seconds = self.grace_seconds
        self.stopping = True
        targets = {c.pid: c.stop_signal for c in self.children if c.pid}
        for pid in self.retiring:
            targets.setdefault(pid, signal.SIGTERM)
        for pid in self._ours():
            targets.setdefault(pid, signal.SIGTERM)
        for pid, signum in targets.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace_seconds
        while self._ours() and time.monotonic() < deadline:
            self._reap()
            time.sleep(POLL_SECONDS)
        left = self._ours()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in {*targets, *left}:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for child in self.children:
            child.pid = 0
            if child.keeper is not None:
                child.keeper.close()
        self.retiring.clear()


def _our_children() -> list[int]:
    """Our live (not yet reaped) children, from /proc (includes adopted orphans)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    live = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] != "Z":
            live.append(pid)
    return live


def hold_instance_lock(path: Path, what: str, how_to_stop: str) -> int:
    """Take the one-instance lock at ``path`` for our lifetime (the fd stays open).

    A second instance is refused with a message naming the running one's pid
    and how to stop it. The kernel drops the lock when we die, however we die.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InstanceRunning(f"{what} is already running (pid {holder}, lock {path}); "
                              f"stop it first ({how_to_stop.format(pid=holder)})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class InstanceRunning(Exception):
    """Another instance holds the lock; the message names it and how to stop it."""
