"""``cloudseed api``: a pre-forking master and its worker processes.

The master checks the settings (so a bad configuration never forks), binds
every listener once, and forks N workers that share them; the kernel hands
each new connection to one worker. Each worker opens its OWN store after the
fork (database connections must not cross a fork), builds a ``MetadataApp``
and serves on uvloop.

Signals to the master:

- SIGTERM / SIGINT: workers stop accepting, finish in-flight requests (up to
  ``api.graceful_timeout_seconds``), and exit; then the master exits 0.
- SIGHUP: settings are read again, a new generation of workers starts on the
  same sockets, and only once all of them are serving are the old ones told
  to stop (they drain as on SIGTERM). A new generation that fails to start is
  killed and the old one keeps serving. Listener addresses and the worker
  count are fixed for the master's lifetime.

Admin listener: worker N listens on ``admin_host:admin_port + N`` for
``/healthz`` and ``/metrics`` (its own metrics). Guests never see it.

The master sleeps in ``sigtimedwait`` with every signal it handles blocked,
so there are no handlers racing the main loop and no event loop to fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloudseed.api.app import build_metadata_app
from cloudseed.api.config import check_api_settings
from cloudseed.errors import ConfigError
from cloudseed.heap import freeze_long_lived
from cloudseed.http.inherit import open_tcp, open_unix, take
from cloudseed.http.server import HttpServer, Limits, install_uvloop, raise_open_files_limit
from cloudseed.log import get_logger
from cloudseed.ready.process import run_renderer
from cloudseed.settings import ApiSettings, Settings
from cloudseed.store import open_store_from_settings
from cloudseed.supervisor import Backoff, die_with_parent, name_process

_log = get_logger("cloudseed.api.service")

# The guest listener's limits come from the settings (``ApiConfig.limits``:
# per-source fairness in direct mode). Bodies up to its max_body_bytes get
# Nova's 400 "Request is too large", larger ones the wire layer's 413.
ADMIN_LIMITS = Limits(max_body_bytes=0, max_connections=64)
# How long a new worker may take to open its store and start listening.
WORKER_START_SECONDS = 60.0
# A worker that dies this many times in a row before serving ends the master:
# it will not get better by itself (store unreachable, bad permissions).
MAX_FAILED_STARTS = 5
UNIX_SOCKET_MODE = 0o660
# The slot of the ready map's renderer among the master's children.
RENDERER_SLOT = -1
# Its name in ps and /proc/PID/comm.
RENDERER_NAME = "cloudseed-ready"

_HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


@dataclass
class Listeners:
    guest: list[socket.socket] = field(default_factory=list)
    admin: list[socket.socket | None] = field(default_factory=list)
    unix_path: str = ""  # set only when we bound it (then we remove it at the end)

    def close(self) -> None:
        for sock in [*self.guest, *(s for s in self.admin if s is not None)]:
            sock.close()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)


def open_sockets(api: ApiSettings) -> list[tuple[str, socket.socket]]:
    """Every socket the API listens on, named for ``http.inherit``: ``api`` (guests),
    ``api-admin-N`` (worker N's admin listener). ``serve`` opens them once and hands
    them to each master it starts; a master run by hand opens them itself."""
    opened: list[tuple[str, socket.socket]] = []
    try:
        if api.host:
            opened.append(("api", open_tcp(api.host, api.port)))
        if api.unix_socket:
            opened.append(("api", open_unix(api.unix_socket, mode=UNIX_SOCKET_MODE,
                                            setting="api.unix_socket")))
        for slot in range(api.workers):
            if api.admin_host:
                port = api.admin_port + slot if api.admin_port else 0
                opened.append((f"api-admin-{slot}", open_tcp(api.admin_host, port)))
    except OSError as exc:
        for _, sock in opened:
            sock.close()
        raise ConfigError(
            f"cannot listen ({exc.strerror}); check api.host, api.port, api.unix_socket, "
            "api.admin_host and api.admin_port"
        ) from None
    if not any(name == "api" for name, _ in opened):
        raise ConfigError("set api.host or api.unix_socket: the API has nowhere to listen")
    return opened


def bind_listeners(api: ApiSettings) -> Listeners:
    """Every socket the workers will share: handed over by ``serve``, or bound here."""
    listeners = Listeners(guest=take("api"))
    admin = {f"api-admin-{slot}": take(f"api-admin-{slot}") for slot in range(api.workers)}
    if not listeners.guest:
        opened = open_sockets(api)
        listeners.guest = [sock for name, sock in opened if name == "api"]
        admin = {name: [sock] for name, sock in opened if name != "api"}
        if api.unix_socket:
            listeners.unix_path = api.unix_socket
    for slot in range(api.workers):
        mine = admin.get(f"api-admin-{slot}")
        listeners.admin.append(mine[0] if mine else None)
    return listeners


# -- worker side --------------------------------------------------------------


async def serve_worker(
    settings: Settings,
    *,
    guest: list[socket.socket],
    admin: socket.socket | None,
    on_ready: Callable[[], None],
    stop: asyncio.Event,
) -> None:
    """One worker: own store, app, listeners; returns after a graceful stop."""
    store = open_store_from_settings(settings.store)
    try:
        app = build_metadata_app(store, settings)
        await app.start()
        server = HttpServer(app.handle, app.config.limits, on_handler_error=app.on_handler_error,
                            failures=app.failures)
        for sock in guest:
            await server.listen_tcp("", 0, sock=sock)
        admin_server = None
        if admin is not None:
            admin_server = HttpServer(app.handle_admin, ADMIN_LIMITS, failures=app.failures)
            await admin_server.listen_tcp("", 0, sock=admin)
        freeze_long_lived()
        on_ready()
        await stop.wait()
        if admin_server is not None:
            await admin_server.stop(grace_seconds=1.0)
        await server.stop(grace_seconds=settings.api.graceful_timeout_seconds)
        await app.stop()
    finally:
        store.close()


def _worker_main(
    settings: Settings, listeners: Listeners, slot: int, *, ready_fd: int,
    master_pid: int,
) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        # A master killed outright must not leave us holding its sockets:
        # SIGTERM when it dies, so in-flight requests finish (graceful stop).
        die_with_parent(master_pid)
        for signum in _HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # only the master reloads
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for index, sock in enumerate(listeners.admin):
            if index != slot and sock is not None:
                sock.close()
        install_uvloop()
        raise_open_files_limit()  # idle long-polls hold connections (api/waiting.py)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)

            def ready() -> None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

            await serve_worker(
                settings,
                guest=listeners.guest,
                admin=listeners.admin[slot],
                on_ready=ready,
                stop=stop,
            )

        asyncio.run(main())
    except BaseException:
        _log.exception("api worker failed", extra={"fields": {"slot": slot}})
        code = 1
    finally:
        os._exit(code)


def _renderer_main(settings: Settings, listeners: Listeners, *, master_pid: int) -> None:
    """The per-host ready map's renderer, in a forked child; never returns."""
    code = 0
    try:
        die_with_parent(master_pid)
        name_process(RENDERER_NAME)
        for signum in _HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the master restarts it instead
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # It serves nothing: the guests' sockets stay with the workers.
        for sock in [*listeners.guest, *(s for s in listeners.admin if s is not None)]:
            sock.close()
        install_uvloop()
        asyncio.run(run_renderer(settings, check_api_settings(settings)))
    except BaseException:
        _log.exception("ready map renderer failed")
        code = 1
    finally:
        os._exit(code)


# -- master side --------------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    slot: int
    generation: int
    ready_fd: int
    ready: bool = False
    started_at: float = 0.0


class WorkerMaster:
    """Forks, watches and replaces workers; handles SIGTERM and SIGHUP.

    It forks (workers share the master's imports and sockets) rather than
    exec'ing, so it is not a ``cloudseed.supervisor.Supervisor``, but it uses
    that module's restart back-off and parent-death signal.
    """

    def __init__(
        self,
        settings: Settings,
        listeners: Listeners,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.listeners = listeners
        self.reload_settings = reload_settings
        self.workers: dict[int, _Worker] = {}
        self.generation = 0
        self.failed_starts = 0
        self.backoff = Backoff()
        self.renderer_backoff = Backoff()

    def _spawn_renderer(self) -> None:
        """The ready map's renderer (none when the map is off): a child of its own
        kind, restarted when it dies, never waited for -- workers serve without it."""
        if not self.settings.api.ready_map or self.settings.api.vendordata_dynamic_targets:
            return
        master = os.getpid()
        pid = os.fork()
        if pid == 0:
            _renderer_main(self.settings, self.listeners, master_pid=master)
        self.workers[pid] = _Worker(pid, RENDERER_SLOT, self.generation, -1, ready=True,
                                    started_at=time.monotonic())

    def _spawn(self, slot: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        master = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _worker_main(self.settings, self.listeners, slot,
                         ready_fd=write_fd, master_pid=master)
        os.close(write_fd)
        worker = _Worker(pid, slot, self.generation, read_fd, started_at=time.monotonic())
        self.workers[pid] = worker
        return worker

    def _await_ready(self, workers: list[_Worker], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        waiting = {w.ready_fd: w for w in workers if not w.ready}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                worker = waiting.pop(fd)
                # b"" means the worker died before serving.
                worker.ready = os.read(fd, 1) == b"1"
                os.close(fd)
                worker.ready_fd = -1
        for fd, worker in waiting.items():
            os.close(fd)
            worker.ready_fd = -1
        return all(w.ready for w in workers)

    def _start_generation(self) -> list[_Worker]:
        self.generation += 1
        return [self._spawn(slot) for slot in range(self.settings.api.workers)]

    def _signal(self, workers: list[_Worker], signum: int) -> None:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    def _current(self) -> list[_Worker]:
        """This generation's processes: its workers and its renderer."""
        return [w for w in self.workers.values() if w.generation == self.generation]

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            first = self._start_generation()
            self._spawn_renderer()
            if not self._await_ready(first, WORKER_START_SECONDS):
                _log.error("api workers did not start; see their errors above")
                self._stop_all(grace=1.0)
                return 1
            _log.info(
                "api serving",
                extra={"fields": {"workers": len(first), "pid": os.getpid()}},
            )
            return self._loop()
        finally:
            self.listeners.close()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)

    def _loop(self) -> int:
        while True:
            info = signal.sigtimedwait(_HANDLED, 1.0)
            if self._reap() is False:
                self._stop_all(grace=1.0)
                return 1
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                _log.info("api stopping")
                self._stop_all(grace=self.settings.api.graceful_timeout_seconds)
                return 0
            if info.si_signo == signal.SIGHUP:
                self._restart()

    def _reap(self) -> bool:
        """Collect exited workers and replace crashed current ones; False = give up."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            worker = self.workers.pop(pid, None)
            if worker is None or worker.generation != self.generation:
                continue
            if worker.slot == RENDERER_SLOT:
                _log.error("ready map renderer exited; starting another",
                           extra={"fields": {"pid": pid, "status": status}})
                time.sleep(self.renderer_backoff.after_exit(time.monotonic() - worker.started_at))
                self._spawn_renderer()
                continue
            _log.error(
                "api worker exited; starting another",
                extra={"fields": {"pid": pid, "slot": worker.slot, "status": status}},
            )
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
            self.failed_starts = self.failed_starts + 1 if not worker.ready else 0
            if self.failed_starts >= MAX_FAILED_STARTS:
                _log.error("api workers keep failing to start; giving up")
                return False
            # Guests wait in the shared socket's backlog meanwhile; the other
            # workers keep accepting.
            time.sleep(self.backoff.after_exit(time.monotonic() - worker.started_at))
            replacement = self._spawn(worker.slot)
            self._await_ready([replacement], WORKER_START_SECONDS)

    def _restart(self) -> None:
        old_settings = self.settings
        if self.reload_settings is not None:
            try:
                fresh = self.reload_settings()
                check_api_settings(fresh)
            except ConfigError as exc:
                _log.error(
                    "settings not reloaded; keeping the running workers",
                    extra={"fields": {"error": exc.message}},
                )
                return
            listener_keys = ("host", "port", "unix_socket", "workers", "admin_host", "admin_port")
            if any(getattr(fresh.api, k) != getattr(old_settings.api, k) for k in listener_keys):
                _log.warning("listener and worker-count changes need a full restart; kept")
                fresh = _with_listeners_of(fresh, old_settings)
            self.settings = fresh
        old = self._current()
        new = self._start_generation()
        if not self._await_ready(new, WORKER_START_SECONDS):
            _log.error("new api workers did not start; keeping the old ones")
            self._signal(new, signal.SIGKILL)
            self.generation -= 1
            self.settings = old_settings
            for worker in new:
                worker.generation = -1
            return
        self._signal(old, signal.SIGTERM)
        # The renderer renders with the new settings (it waits for the old one's lock).
        self._spawn_renderer()
        _log.info("api workers replaced", extra={"fields": {"generation": self.generation}})

    def _stop_all(self, grace: float) -> None:
        workers = list(self.workers.values())
        self._signal(workers, signal.SIGTERM)
        deadline = time.monotonic() + grace + 5.0
        while self.workers and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid:
                    self.workers.pop(pid, None)
                    continue
            time.sleep(0.05)
        self._signal(list(self.workers.values()), signal.SIGKILL)
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.workers.clear()


def _with_listeners_of(fresh: Settings, old: Settings) -> Settings:
    keep = {
        k: getattr(old.api, k)
        for k in ("host", "port", "unix_socket", "workers", "admin_host", "admin_port")
    }
    return dataclasses.replace(fresh, api=dataclasses.replace(fresh.api, **keep))


def run_api(settings: Settings, reload_settings: Callable[[], Settings] | None = None) -> int:
    """Check settings, bind, fork the workers and supervise them until SIGTERM."""
    check_api_settings(settings)  # refuse to start before binding anything
    listeners = bind_listeners(settings.api)
    return WorkerMaster(settings, listeners, reload_settings).run()
