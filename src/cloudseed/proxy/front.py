"""The shared front: one built-in proxy process for every namespace of a host.

``dataplane.proxy_implementation = "shared"`` runs this instead of one proxy
per router or DHCP namespace. It reads the listener set the data plane wrote
(``proxy.listener_set``), opens each namespace's listeners inside that
namespace (``proxy.listen.bind_in_namespaces``: a dedicated thread enters the
namespace, binds, and switches back; the socket stays in its namespace), and
serves them all from one event loop. Each namespace's listeners get their own
``WireServer`` whose dispatch carries that namespace's scope line, so a
request's ``X-Neutron-Router-ID`` / ``X-Neutron-Network-ID`` is decided by the
socket it arrived on and nothing else; the same ``RelayCore`` as the
per-namespace proxy does the hygiene, the hop limit and the relaying. The
per-source limits are per namespace, as with one proxy per namespace: two
tenants that both use 10.0.0.5 are two sources.

SIGHUP re-reads the set: namespaces that left (or changed) are closed first
(their connections finish, up to the grace period), new ones are bound and
served; every other namespace's listener stays open throughout, so nothing
there is refused. A namespace that cannot be bound (not there yet, port in
use) is retried every ``RETRY_SECONDS`` and named in ``/healthz`` meanwhile.
Every ``CHECK_SECONDS`` the front also checks that each namespace name still
names the namespace its listeners are in: one deleted and created again (by
hand, then by ``sync``) gets fresh listeners, where a per-namespace proxy
would keep serving the dead one.

Under the data plane's supervisor (``--keep-sockets``) the listeners outlive
the front: each new set is handed up to the supervisor (``http.inherit``
``Handoff``) before it listens, under a key naming the entry and the
namespace it was bound in (``held_key``); a set the front closes is
released. A front that starts again adopts every kept set whose key its
listener file and namespaces still give, releases the rest, and binds only
what is new: meanwhile clients waited in the kept sockets' backlogs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudseed.errors import ConfigError
from cloudseed.http.inherit import Handoff
from cloudseed.http.listeners import WireServer
from cloudseed.http.server import raise_open_files_limit
from cloudseed.http.wire import WireConnection
from cloudseed.log import get_logger
from cloudseed.proxy.colocated import ColocatedAnswers, answer_scope
from cloudseed.proxy.listen import Bound, NetnsIdentity, bind_in_namespaces, netns_identity
from cloudseed.proxy.listener_set import ScopedListeners, parse_listener_set
from cloudseed.proxy.relay import ProxyScope, RelayCore
from cloudseed.settings import ProxySettings

log = get_logger("proxy")

LISTEN_BACKLOG = 1024
# A namespace whose listeners failed to bind is tried again this often.
RETRY_SECONDS = 2.0
# How often the front checks that each namespace is still the one it bound in.
CHECK_SECONDS = 5.0
# Closing a namespace's listeners lets its answers in progress finish this long.
DRAIN_SECONDS = 5.0
# /healthz names at most this many failing namespaces (the count is always there).
MAX_REASONS = 20


def held_key(entry: ScopedListeners, netns: NetnsIdentity) -> str:
    """The name a kept set goes by: its entry and the namespace it is really in.

    A namespace created again under the same name, or an entry whose scope or
    addresses changed, gives another key, so a restarted front never adopts a
    socket for what it no longer serves. Short (12 characters, 72 bits), as
    every kept socket's name is in one environment variable of the next front.
    """
    text = json.dumps([entry.namespace, entry.scope.router_id, entry.scope.network_id,
                       list(entry.listen), list(netns)])
    digest = hashlib.blake2b(text.encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


@dataclass
class _Served:
    entry: ScopedListeners
    server: WireServer
    netns: NetnsIdentity
    bound: list[tuple[str, int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return held_key(self.entry, self.netns)

    def is_current(self) -> bool:
        return netns_identity(self.entry.namespace) == self.netns


class Front(RelayCore):
    def __init__(self, listener_file: str | Path, agent_socket: str,
                 settings: ProxySettings | None = None, handoff: Handoff | None = None,
                 colocated: Callable[[Front], ColocatedAnswers] | None = None) -> None:
        super().__init__(agent_socket, settings)
        # Co-located mode (proxy/colocated.py): answered here, not relayed to the agent.
        self.answers = colocated(self) if colocated is not None else None
        self.listener_file = Path(listener_file)
        # Our supervisor's copies of our listeners (None: run by hand, nothing kept).
        self.handoff = handoff
        self.served: dict[ProxyScope, _Served] = {}
        self.failed: dict[ProxyScope, tuple[ScopedListeners, str]] = {}
        self.file_problem = ""
        self._draining: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._again = False
        self._retry: asyncio.TimerHandle | None = None
        self._check: asyncio.TimerHandle | None = None
        self.reloads = self.registry.counter(
            "cloudseed_front_reloads_total", "Listener-set reloads (start and SIGHUP).")
        self.adopted = self.registry.counter(
            "cloudseed_front_namespaces_adopted_total",
            "Namespaces served on listeners kept by the supervisor across a restart.")
        self.registry.gauge("cloudseed_front_namespaces", "Namespaces with open listeners.",
                            read=lambda: float(len(self.served)))
        self.registry.gauge("cloudseed_front_namespaces_failed",
                            "Namespaces whose listeners could not be opened (retried).",
                            read=lambda: float(len(self.failed)))

    # -- the listener set -----------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: re-read the set (again after the current pass, if one is running)."""
        self._again = True
        if not self._lock.locked():
            task = asyncio.ensure_future(self.reload())
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def reload(self) -> None:
        async with self._lock:
            self._again = True
            while self._again:
                self._again = False
                await self._reload_once()

    async def _reload_once(self) -> None:
        self.reloads.inc()
        try:
            entries = parse_listener_set(self.listener_file.read_text())
        except (OSError, ConfigError) as exc:
            # Keep serving what we have: a broken file must not close every namespace.
            why = exc.message if isinstance(exc, ConfigError) else exc.strerror
            self.file_problem = f"cannot use {self.listener_file}: {why}"
            log.error("listener set not applied", extra={"fields": {
                "file": str(self.listener_file), "error": why}})
            return
        self.file_problem = ""
        wanted = {e.scope: e for e in entries}
        gone = [k for k, s in self.served.items()
                if wanted.get(k) != s.entry or not s.is_current()]
        if self.handoff is not None:
            self.handoff.release(self.served[scope].key for scope in gone)
        for scope in gone:
            self._close(scope)
        self.failed = {k: f for k, f in self.failed.items() if wanted.get(k) == f[0]}
        fresh = [e for k, e in wanted.items() if k not in self.served]
        adopted = await self._open(fresh)
        self._schedule_retry()
        log.info("listener set applied", extra={"fields": {
            "namespaces": len(self.served), "failed": len(self.failed),
            "opened": sum(1 for e in fresh if e.scope in self.served), "adopted": adopted}})

    def _adopt(self, entry: ScopedListeners) -> Bound | None:
        """The listeners our supervisor kept for ``entry`` in its namespace as it is now."""
        netns = netns_identity(entry.namespace)
        if self.handoff is None or netns is None:
            return None
        sockets = self.handoff.adopt(held_key(entry, netns))
        if len(sockets) != len(entry.listen):
            for sock in sockets:
                sock.close()
            return None
        for sock in sockets:
            sock.setblocking(False)
        return Bound(sockets, netns)

    async def _open(self, entries: list[ScopedListeners]) -> int:
        """Serve ``entries``: on kept listeners where there are some, else on new ones.

        Returns how many were adopted."""
        ready = [(e, bound) for e in entries if (bound := self._adopt(e)) is not None]
        if self.handoff is not None:
            # Kept for entries we no longer serve (or for a namespace since re-created):
            # closed on both sides before we bind, so their addresses are free again.
            self.handoff.release_unadopted()
        kept = {e.scope for e, _ in ready}
        unbound = [e for e in entries if e.scope not in kept]
        loop = asyncio.get_running_loop()
        # The binding thread is made inside; the executor thread only waits for it.
        outcomes = await loop.run_in_executor(
            None, bind_in_namespaces, [(e.namespace, e.addresses()) for e in unbound],
        ) if unbound else []
        fresh: list[tuple[ScopedListeners, Bound]] = []
        for entry, outcome in zip(unbound, outcomes, strict=True):
            if isinstance(outcome, ConfigError):
                self.failed[entry.scope] = (entry, outcome.message)
                log.warning("cannot listen in namespace", extra={"fields": {
                    "netns": entry.namespace, "error": outcome.message}})
            else:
                fresh.append((entry, outcome))
        if self.handoff is not None and fresh:
            # Before they listen: from here on our death refuses nothing on them.
            self.handoff.keep([(held_key(e, b.netns), b.sockets) for e, b in fresh])
        for entry, bound in [*ready, *fresh]:
            self.failed.pop(entry.scope, None)
            served = _Served(entry, self.guest_server(entry.scope), bound.netns)
            for sock in bound.sockets:
                served.bound.append(await served.server.listen_tcp(
                    "", 0, sock=sock, backlog=LISTEN_BACKLOG))
            self.served[entry.scope] = served
        self.adopted.inc(amount=len(ready))
        return len(ready)

    def _close(self, scope: ProxyScope) -> None:
        """Stop serving ``scope`` here (releasing it from the supervisor is the caller's)."""
        served = self.served.pop(scope)
        # Closed now, so a changed entry can bind the same address at once;
        # answers in progress finish meanwhile.
        served.server.stop_listening()
        task = asyncio.ensure_future(served.server.stop(grace_seconds=DRAIN_SECONDS))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.failed:
            loop = asyncio.get_running_loop()
            self._retry = loop.call_later(RETRY_SECONDS, self.request_reload)

    def _check_namespaces(self) -> None:
        loop = asyncio.get_running_loop()
        self._check = loop.call_later(CHECK_SECONDS, self._check_namespaces)
        if not all(served.is_current() for served in self.served.values()):
            self.request_reload()

    # -- serving --------------------------------------------------------------

    def dispatch_for(self, scope: ProxyScope) -> Callable[[WireConnection], None]:
        answers = self.answers
        if answers is None:
            return super().dispatch_for(scope)
        where = answer_scope(scope)

        def answer(conn: WireConnection) -> None:
            kept = self.admit(conn)
            if kept is not None:
                answers.answer(conn, where, kept)

        return answer

    async def start(self, status_socket: str = "") -> None:
        raise_open_files_limit()
        if self.answers is not None:
            await self.answers.start()
        await self.reload()
        self._check = asyncio.get_running_loop().call_later(CHECK_SECONDS,
                                                            self._check_namespaces)
        if status_socket:
            await self.status_server.listen_unix(status_socket, mode=0o660)
        log.info("shared front listening", extra={"fields": {
            "namespaces": len(self.served), "failed": len(self.failed),
            "file": str(self.listener_file),
            "answers": "co-located" if self.answers is not None else "relay",
            "agent": str(self.client.upstream) if self.answers is None else ""}})

    async def stop(self) -> None:
        for timer in (self._retry, self._check):
            if timer is not None:
                timer.cancel()
        for scope in list(self.served):
            self._close(scope)
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
        if self.answers is not None:
            await self.answers.stop()
        await self.close()

    def connection_count(self) -> int:
        return sum(len(s.server.connections) for s in self.served.values())

    def serving(self) -> bool:
        # Co-located: requests wait (bounded) for the address map, so a readiness
        # probe does too, as for the agent.
        return self.answers is None or self.answers.followed.map is not None

    def problems(self) -> list[str]:
        reasons = [self.file_problem] if self.file_problem else []
        if self.answers is not None:
            reasons.extend(self.answers.problems())
        for entry, why in sorted(self.failed.values(), key=lambda f: f[0].namespace)[
                :MAX_REASONS]:
            reasons.append(f"no listener in {entry.namespace or '(own namespace)'}: {why}")
        return reasons

    def health(self) -> dict[str, object]:
        health: dict[str, object] = {"namespaces": len(self.served), "failed": len(self.failed),
                                     "connections": self.connection_count()}
        if self.answers is not None:
            amap = self.answers.followed.map
            health["answers"] = "co-located"
            health["revision"] = self.answers.followed.revision
            health["map_ports"] = len(amap) if amap is not None else 0
        return health


async def run_front(listener_file: str, agent_socket: str, settings: ProxySettings,
                    status_socket: str = "",
                    colocated: Callable[[Front], ColocatedAnswers] | None = None) -> None:
    front = Front(listener_file, agent_socket, settings, handoff=Handoff.inherited(),
                  colocated=colocated)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, front.request_reload)
    await front.start(status_socket)
    try:
        await asyncio.Event().wait()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await front.stop()


__all__ = ["Front", "held_key", "run_front"]
