"""Every server the benchmark measures, configured for one run directory.

Reference servers (always available):
  raw_tcp, raw_unix   asyncio + httptools + uvloop answering ready bytes
  nginx               the same files, statically (the C ceiling)
  haproxy_neutron     haproxy with the config Neutron 29 generates → raw_unix
cloudseed tiers (when their code is installed):
  api                 `cloudseed api`, proxy mode, --workers workers (default 2)
  api_1w, api_2w      the same with one and with two workers (the cold storm rows)
  api_noaudit         `cloudseed api` with the access audit off (the audit's cost)
  agent               `cloudseed agent` on a Unix socket → api
  agent_static        `cloudseed agent` → raw_tcp (the upstream Neutron's agent gets too)
  proxy_fixed         `cloudseed proxy` → raw_unix (the proxy's own cost)
  haproxy_fixed       haproxy with cloudseed's generated config → raw_unix
  shared_fixed        the shared front → raw_unix (its own cost)
  proxy_chain         `cloudseed proxy` → agent → api (the full chain)
  haproxy_chain       haproxy with cloudseed's config → agent → api
  shared_chain        the shared front (`cloudseed proxy --listeners-file`, one listener
                      entry on loopback for the fleet's network) → agent → api
The real Nova and Neutron (bench/anchors.py):
  nova                Nova 34's metadata app under uwsgi, as many workers as api
  neutron_agent       Neutron 29's metadata agent → raw_tcp
  neutron_chain       haproxy (Neutron's generated config) → neutron_chain_agent → nova
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port

from bench import anchors, fleet
from bench.services import Service
from cloudseed.ready.store import ReadyMap, map_path
from cloudseed.store import open_store

REPO = Path(__file__).resolve().parent.parent
# worker_processes 1: one core for the server, one for the load generator,
# as every other row.
NGINX = """daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    open_file_cache max=1000 inactive=60s;
    client_body_temp_path {run}/nginx-tmp;
    proxy_temp_path {run}/nginx-tmp;
    fastcgi_temp_path {run}/nginx-tmp;
    uwsgi_temp_path {run}/nginx-tmp;
    scgi_temp_path {run}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {docroot};
        location / {{ try_files $uri/_ =404; }}
    }}
}}
"""

CLOUDSEED_TIERS = {
    "api": "cloudseed.cli.api",
    "agent": "cloudseed.cli.agent",
    "proxy": "cloudseed.cli.proxy",
    "haproxy": "cloudseed.proxy.haproxy",
    "front": "cloudseed.proxy.front",
}


# `cloudseed api` services: each has the host's ready map renderer beside its workers.
API_SERVICES = frozenset({"api", "api_1w", "api_2w", "api_noaudit"})
# How long the renderer may take over the whole fleet (1,000,000 servers: minutes).
READY_MAP_SECONDS = 3600.0

# What a cold row restarts: every process that remembers a server.
COLD_RESTART = frozenset({
    "api", "api_1w", "api_2w", "agent", "agent_static", "proxy_chain", "haproxy_chain",
    "shared_chain", "colocated_chain", "nova",
})


def tier_available(tier: str) -> bool:
    return importlib.util.find_spec(CLOUDSEED_TIERS[tier]) is not None


class Stack:
    """Lazily started services; ``service(name)`` starts one (and what it needs)."""

    def __init__(self, run_dir: Path, store_url: str, secret: str, docroot: Path,
                 tier_env: dict[str, str] | None = None, *, workers: int = 2,
                 servers: int = 0) -> None:
        self.run_dir = run_dir
        self.workers = workers
        self.servers = servers
        self.store_url = store_url
        self.secret = secret
        self.docroot = docroot
        self.tier_env = tier_env or {}
        self._services: dict[str, Service] = {}
        # A service that would not start is not tried again for every row.
        self._failed: dict[str, str] = {}
        # Started and not yet measured: nothing has warmed it, so a cold row
        # need not restart it.
        self._fresh: set[str] = set()
        self._needs = {
            "haproxy_neutron": ["raw_unix"],
            "proxy_fixed": ["raw_unix"],
            "haproxy_fixed": ["raw_unix"],
            "shared_fixed": ["raw_unix"],
            "agent": ["api"],
            "agent_static": ["raw_tcp"],
            "proxy_chain": ["agent"],
            "haproxy_chain": ["agent"],
            "shared_chain": ["agent"],
            # Only for the per-host ready map (its renderer): no guest request reaches it.
            "colocated_chain": ["api"],
            "neutron_agent": ["raw_tcp"],
            "neutron_chain_agent": ["nova"],
            "neutron_chain": ["neutron_chain_agent"],
        }
        self._tiers = {
            "api": ["api"],
            "api_1w": ["api"],
            "api_2w": ["api"],
            "api_noaudit": ["api"],
            "agent": ["api", "agent"],
            "agent_static": ["agent"],
            "proxy_fixed": ["proxy"],
            "haproxy_fixed": ["haproxy"],
            "shared_fixed": ["front"],
            "proxy_chain": ["api", "agent", "proxy"],
            "haproxy_chain": ["api", "agent", "haproxy"],
            "shared_chain": ["api", "agent", "front"],
            "colocated_chain": ["api", "front"],
        }

    def missing_tiers(self, name: str) -> list[str]:
        return [t for t in self._tiers.get(name, []) if not tier_available(t)]

    def service(self, name: str, *, wait_map: bool = True) -> Service:
        """``name``, started if needed; an api also waits for the ready map unless
        ``wait_map`` is False (then the caller calls ``wait_ready_map``)."""
        if name in self._failed:
            raise RuntimeError(self._failed[name])
        if name not in self._services:
            for need in self._needs.get(name, []):
                self.service(need)
            svc = getattr(self, f"_make_{name}")()
            try:
                svc.start()
            except RuntimeError as exc:
                self._failed[name] = str(exc)
                raise
            self._services[name] = svc
            self._fresh.add(name)
            if name in API_SERVICES and wait_map:
                self.wait_ready_map()
        return self._services[name]

    def ready_map_path(self) -> Path:
        with open_store(self.store_url) as store:
            return map_path(self.run_dir / "ready", store.store_id())

    def wait_ready_map(self) -> float:
        """Wait until the host's ready map holds the whole fleet (seconds waited).

        Cold rows measure workers that never saw a server, on a host whose renderer
        has rendered it -- as it has moments after a server is created, before its VM
        boots. ``api.ready_map = false`` in ``tier_env`` measures without it."""
        if self.tier_env.get("CLOUDSEED_API_READY_MAP", "true").lower() == "false":
            return 0.0
        started = time.monotonic()
        with open_store(self.store_url) as store:
            revision = store.revision()
        path = self.ready_map_path()
        while time.monotonic() - started < READY_MAP_SECONDS:
            ready = ReadyMap.reader(path)
            if ready is not None:
                try:
                    if ready.built_from()[1] >= revision:
                        return time.monotonic() - started
                finally:
                    ready.close()
            time.sleep(0.1)
        raise RuntimeError(f"the ready map at {path} was not built in {READY_MAP_SECONDS} s")

    def chain(self, name: str) -> list[str]:
        """The service and everything behind it: the processes under test."""
        out = [name]
        for need in self._needs.get(name, []):
            out += [n for n in self.chain(need) if n not in out]
        return out

    def running_pid(self, name: str) -> int:
        """The pid of ``name`` if it was started (KeyError otherwise); starts nothing."""
        return self._services[name].pid

    def restart_cold(self, name: str) -> None:
        """Forget everything the chain of ``name`` learnt: restart every tier that
        caches (cloudseed's, and Nova with its metadata cache), backends first,
        so no tier keeps a pooled connection to a process that is gone."""
        for need in reversed(self.chain(name)):
            if need in COLD_RESTART and need not in self._fresh:
                self.service(need).restart()
                if need in API_SERVICES:
                    self.wait_ready_map()

    def pids(self, names: list[str]) -> list[int]:
        """The processes of ``names``, about to be measured (so no longer fresh)."""
        self._fresh.difference_update(names)
        return [self.service(n).pid for n in names]

    def stop_all(self) -> None:
        for svc in reversed(list(self._services.values())):
            svc.stop()
        self._services.clear()

    # -- the services ---------------------------------------------------------

    def _socket(self, name: str) -> str:
        return str(self.run_dir / f"{name}.sock")

    def _svc(self, name: str, argv: list[str], target: str, env: dict[str, str] | None = None,
             health: list[str] | None = None) -> Service:
        return Service(name, argv, target, self.run_dir, env or {}, health or [])

    def _make_raw_tcp(self) -> Service:
        port = free_port()
        argv = [sys.executable, "-m", "bench.refserver", "--docroot", str(self.docroot),
                "--tcp", f"127.0.0.1:{port}"]
        return self._svc("raw_tcp", argv, f"tcp:127.0.0.1:{port}", {"PYTHONPATH": str(REPO)})

    def _make_raw_unix(self) -> Service:
        sock = self._socket("raw")
        argv = [sys.executable, "-m", "bench.refserver", "--docroot", str(self.docroot),
                "--unix", sock]
        return self._svc("raw_unix", argv, f"unix:{sock}", {"PYTHONPATH": str(REPO)})

    def _make_nginx(self) -> Service:
        port = free_port()
        (self.run_dir / "nginx-tmp").mkdir(exist_ok=True)
        conf = self.run_dir / "nginx.conf"
        conf.write_text(NGINX.format(run=self.run_dir, port=port, docroot=self.docroot))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-c", str(conf), "-p", str(self.run_dir)]
        return self._svc("nginx", argv, f"tcp:127.0.0.1:{port}")

    def _haproxy(self, name: str, config: str, port: int) -> Service:
        path = self.run_dir / f"{name}.cfg"
        path.write_text(config)
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        return self._svc(name, [haproxy, "-db", "-f", str(path)], f"tcp:127.0.0.1:{port}")

    def _make_haproxy_neutron(self) -> Service:
        # The config Neutron's own metadata driver generates (bench/anchors.py).
        return anchors.neutron_haproxy(self.run_dir, "haproxy_neutron", self.secret,
                                       free_port(), self._socket("raw"))

    def _cloudseed_haproxy(self, name: str, backend: str) -> Service:
        from cloudseed.proxy.haproxy import config_for, render_config
        from cloudseed.proxy.listen import ListenAddress
        from cloudseed.proxy.relay import ProxyScope
        from cloudseed.settings import ProxySettings

        port = free_port()
        config = config_for(ProxyScope(network_id=fleet.NETWORK_ID),
                            [ListenAddress("127.0.0.1", port)], backend, self.run_dir,
                            ProxySettings())
        return self._haproxy(name, render_config(config), port)

    def _make_haproxy_fixed(self) -> Service:
        return self._cloudseed_haproxy("haproxy_fixed", self._socket("raw"))

    def _make_haproxy_chain(self) -> Service:
        return self._cloudseed_haproxy("haproxy_chain", self._socket("agent"))

    def cloudseed_env(self) -> dict[str, str]:
        vendordata = self.run_dir / "vendordata.json"
        vendordata.write_text(json.dumps(fleet.VENDOR_DATA))
        return {
            "CLOUDSEED_STORE_URL": self.store_url,
            "CLOUDSEED_STORE_DATA_DIR": str(self.run_dir),
            "CLOUDSEED_SHARED_SECRET": self.secret,
            "CLOUDSEED_API_VENDORDATA_STATIC_FILE": str(vendordata),
            **self.tier_env,
        }

    def _cloudseed(self, name: str, args: list[str], target: str, env: dict[str, str],
                   health: list[str] | None = None) -> Service:
        argv = [sys.executable, "-m", "cloudseed", "--log-level", "warning", *args]
        return self._svc(name, argv, target, {**self.cloudseed_env(), **env}, health)

    def _api(self, name: str, workers: int, extra: dict[str, str] | None = None) -> Service:
        port = free_port()
        # One admin port per worker, from this one on; every worker must be ready.
        admin = free_port(count=workers)
        env = {"CLOUDSEED_API_HOST": "127.0.0.1", "CLOUDSEED_API_PORT": str(port),
               "CLOUDSEED_API_WORKERS": str(workers), "CLOUDSEED_API_MODE": "proxy",
               "CLOUDSEED_API_ADMIN_PORT": str(admin), **(extra or {})}
        health = [f"tcp:127.0.0.1:{admin + n}" for n in range(workers)]
        return self._cloudseed(name, ["api"], f"tcp:127.0.0.1:{port}", env, health)

    def _make_api(self) -> Service:
        return self._api("api", self.workers)

    def _make_api_1w(self) -> Service:
        return self._api("api_1w", 1)

    def _make_api_2w(self) -> Service:
        return self._api("api_2w", 2)

    def _make_api_noaudit(self) -> Service:
        return self._api("api_noaudit", self.workers, {"CLOUDSEED_AUDIT_ENABLED": "false"})

    def _agent(self, name: str, upstream: str) -> Service:
        sock = self._socket(name)
        status = free_port()
        env = {"CLOUDSEED_AGENT_SOCKET_PATH": sock,
               "CLOUDSEED_AGENT_API_URL": f"http://{upstream.removeprefix('tcp:')}",
               "CLOUDSEED_AGENT_METRICS_PORT": str(status)}
        return self._cloudseed(name, ["agent"], f"unix:{sock}", env,
                               [f"tcp:127.0.0.1:{status}"])

    def _make_agent(self) -> Service:
        return self._agent("agent", self.service("api").target)

    def _make_agent_static(self) -> Service:
        return self._agent("agent_static", self.service("raw_tcp").target)

    # -- the real Nova and Neutron (bench/anchors.py) -------------------------

    def _make_nova(self) -> Service:
        return anchors.nova(self.run_dir, self.servers, self.secret, free_port(), self.workers)

    def _make_neutron_agent(self) -> Service:
        upstream = int(self.service("raw_tcp").target.rpartition(":")[2])
        return anchors.neutron_agent(self.run_dir, "neutron_agent", self.servers, self.secret,
                                     upstream)

    def _make_neutron_chain_agent(self) -> Service:
        nova = int(self.service("nova").target.rpartition(":")[2])
        return anchors.neutron_agent(self.run_dir, "neutron_chain_agent", self.servers,
                                     self.secret, nova)

    def _make_neutron_chain(self) -> Service:
        agent = self.service("neutron_chain_agent").target.removeprefix("unix:")
        return anchors.neutron_haproxy(self.run_dir, "neutron_chain", self.secret, free_port(),
                                       agent)

    def _proxy(self, name: str, backend: str) -> Service:
        port = free_port()
        args = ["proxy", "--listen", f"127.0.0.1:{port}", "--network-id", fleet.NETWORK_ID,
                "--agent-socket", backend]
        return self._cloudseed(name, args, f"tcp:127.0.0.1:{port}", {})

    def _make_proxy_fixed(self) -> Service:
        return self._proxy("proxy_fixed", self._socket("raw"))

    def _make_proxy_chain(self) -> Service:
        return self._proxy("proxy_chain", self._socket("agent"))

    def _front(self, name: str, backend: str, answers: str = "relay") -> Service:
        """The shared front as the data plane runs it (its argv from ``_plan_front``),
        with one listener entry: the fleet's network, on loopback, in the front's own
        namespace ("") so the load generator's per-VM sources reach it. The request
        path is the one every namespace's listener takes (a ``WireServer`` per entry
        carrying its scope, ``RelayCore``); a namespace would only change the thread
        that binds the socket (bench/README.md, "The shared front's rows")."""
        from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
        from cloudseed.proxy.relay import ProxyScope

        port = free_port()
        listeners = self.run_dir / f"{name}-listeners.json"
        listeners.write_text(render_listener_set([ScopedListeners(
            "", ProxyScope(network_id=fleet.NETWORK_ID), (f"127.0.0.1:{port}",))]))
        status = self._socket(f"{name}-status")
        args = ["proxy", "--listeners-file", str(listeners), "--agent-socket", backend,
                "--status-socket", status]
        if answers != "relay":
            args += ["--answers", answers]  # as the plan adds it (dataplane.front_answers)
        # Ready when its /healthz says every entry's listener is open.
        return self._cloudseed(name, args, f"tcp:127.0.0.1:{port}", {}, [f"unix:{status}"])

    def _make_shared_fixed(self) -> Service:
        return self._front("shared_fixed", self._socket("raw"))

    def _make_shared_chain(self) -> Service:
        return self._front("shared_chain", self._socket("agent"))

    def _make_colocated_chain(self) -> Service:
        # Answers itself (proxy/colocated.py): no agent socket is ever connected to.
        return self._front("colocated_chain", self._socket("no-agent"), answers="co-located")


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop_all()
