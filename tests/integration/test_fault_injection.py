"""Faults under a boot storm: guest → proxy → agent → API on a private PostgreSQL.

``cloudseed serve`` runs the control API, the metadata API (two workers) and
the agent; a namespace proxy runs under the data plane's supervisor (no
namespace here: loopback), as ``dataplane sync`` starts it. Guests on
127.0.0.10.. fetch their own meta_data.json without pause, and an operator
writes metadata through the control API the whole time, while the test, one
fault at a time: kills the agent, an API worker, the ready map's renderer and
the API master (SIGKILL), restarts the proxy, switches it to haproxy, kills the
agent again behind haproxy, restarts haproxy, switches back, and stops and
restarts PostgreSQL. Then ``serve`` is stopped.

Asserted: no answer carries another server's data; every acknowledged write
is stored once, as written, and reaches the guest; no guest request fails
during a process kill or a proxy change; during the store outage every
failure is a 503 with Retry-After; nothing is left running afterwards. The
figures are printed (``pytest -s`` shows them).

The guests' client behaves like any HTTP/1.1 client with a keep-alive pool
(and like ours, ``http.client``): a GET whose reused connection closed before
a single byte came back is sent again once on a new connection. Those re-sends
are counted and printed; any other failure counts as failed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.postgres import PrivatePostgres, private_postgres
from tests.support.processes import alive, descendants, wait_until
from tests.support.proxy import HAPROXY

from cloudseed.api.service import RENDERER_NAME
from cloudseed.dataplane import supervise
from cloudseed.dataplane.runner import Runner
from cloudseed.model import FixedIp, Network, Port, Server, Subnet
from cloudseed.proxy.haproxy import config_for, render_config
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope
from cloudseed.settings import ProxySettings
from cloudseed.store import open_store, upgrade

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy is not installed")

GUESTS = 12
NETWORK = "net-faults"
DOC = "/openstack/latest/meta_data.json"
# Each fault is followed by this much storm before the next one.
SETTLE_SECONDS = 3.0
OUTAGE_SECONDS = 3.0
RECOVERY_SECONDS = 60.0


def _uuid(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-{index:012x}"


def _ip(index: int) -> str:
    return f"127.0.0.{10 + index}"



@dataclass
class Tally:
    """Outcomes by fault phase."""

    phase: str = "warm-up"
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    foreign: int = 0
    resent: int = 0
    recovered_at: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    last_failure: dict[str, float] = field(default_factory=dict)

    def count_ok(self) -> None:
        with self.lock:
            self.ok[self.phase] += 1

    def count_failed(self, cause: str) -> None:
        with self.lock:
            self.failed[(self.phase, cause)] += 1
            self.last_failure[self.phase] = time.monotonic()

    def enter(self, phase: str) -> None:
        with self.lock:
            self.phase = phase
            self.started_at[phase] = time.monotonic()


class Guest(threading.Thread):
    """One guest asking for its own document over a keep-alive connection."""

    def __init__(self, index: int, port: int, tally: Tally, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.index, self.port, self.tally, self.stop = index, port, tally, stop
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                          source_address=(_ip(self.index), 0))

    def _get(self) -> tuple[int, dict[str, str], bytes]:
        reused = self.conn is not None
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request("GET", DOC)
            resp = self.conn.getresponse()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn = None
            if not reused:
                raise
            with self.tally.lock:
                self.tally.resent += 1
            return self._get()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, headers, body = self._get()
            except OSError as exc:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                self.tally.count_failed(type(exc).__name__)
                time.sleep(0.01)
                continue
            if status == 200:
                if json.loads(body)["uuid"] != _uuid(self.index):
                    with self.tally.lock:
                        self.tally.foreign += 1
                else:
                    self.tally.count_ok()
                continue
            retry = "+Retry-After" if "retry-after" in headers else ""
            self.tally.count_failed(f"{status}{retry}")
            time.sleep(0.01)


class Operator(threading.Thread):
    """Writes metadata through the control API without pause; remembers what was acked."""

    def __init__(self, port: int, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.stop = port, token, stop
        self.acked: dict[tuple[str, str], str] = {}
        self.unacked: dict[tuple[str, str], str] = {}
        self.refusals: Counter[str] = Counter()

    def run(self) -> None:
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            server, key, value = _uuid(sequence % GUESTS), f"w{sequence}", f"v{sequence}"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("PUT", f"/v1/servers/{server}/metadata/{key}",
                             body=json.dumps({"meta": {key: value}}),
                             headers={"Authorization": f"Bearer {self.token}",
                                      "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                status = resp.status
                retry = "+Retry-After" if resp.getheader("Retry-After") else ""
            except OSError as exc:
                status, retry = 0, type(exc).__name__
            if 200 <= status < 300:
                self.acked[(server, key)] = value
            else:
                self.unacked[(server, key)] = value
                self.refusals[f"{status}{retry}"] += 1
                time.sleep(0.05)
            time.sleep(0.02)


def _write_world(url: str) -> None:
    with open_store(url) as store, store.write() as w:
        w.put_network(Network(NETWORK, NETWORK))
        w.put_subnet(Subnet("sub-faults", NETWORK, "127.0.0.0/24", 4))
        for index in range(GUESTS):
            w.put_server(Server(id=_uuid(index), name=f"vm-{index}", hostname=f"vm-{index}",
                               project_id="proj-faults"))
            w.put_port(Port(f"port-{index}", NETWORK, f"fa:16:3e:00:00:{index:02x}",
                            (FixedIp("sub-faults", _ip(index)),), server_id=_uuid(index)))


@contextmanager
def _serve(tmp: Path, pg: PrivatePostgres) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    ports = {"control": str(free_port()), "api": str(free_port()), "admin": str(free_port())}
    env = {**os.environ,
           "CLOUDSEED_STORE_DATA_DIR": str(tmp / "data"), "CLOUDSEED_STORE_URL": pg.url,
           "CLOUDSEED_CONTROL_PORT": ports["control"], "CLOUDSEED_API_HOST": "127.0.0.1",
           "CLOUDSEED_API_PORT": ports["api"], "CLOUDSEED_API_ADMIN_PORT": ports["admin"],
           "CLOUDSEED_API_WORKERS": "2",
           "CLOUDSEED_AGENT_API_URL": f"http://127.0.0.1:{ports['api']}",
           "CLOUDSEED_AGENT_SOCKET_PATH": str(tmp / "agent.sock"),
           "CLOUDSEED_AGENT_METRICS_PORT": "-1",
           # The storm is many requests from few guests; per-guest limits are not tested here.
           "CLOUDSEED_AGENT_RATE_LIMIT_ENABLED": "false"}
    log = open(tmp / "serve.log", "ab")  # noqa: SIM115 - kept by the child
    serve = subprocess.Popen(
        [sys.executable, "-m", "cloudseed", "--log-level", "info", "serve",
         "--tiers", "control,api,agent"], env=env, stdout=log, stderr=log)
    log.close()
    try:
        yield serve, {**ports, "socket": str(tmp / "agent.sock"), "data": str(tmp / "data")}
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def _tier_pid(serve_pid: int, *words: str) -> int:
    for pid in descendants(serve_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent == serve_pid and all(w.encode() in argv for w in words):
            return pid
    return 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    return [int(p) for task in Path(f"/proc/{pid}/task").glob("*")
            for p in (task / "children").read_text().split()]


def test_faults_under_a_boot_storm(tmp_path: Path) -> None:
    tally = Tally()
    stop = threading.Event()
    runner = Runner()
    state_dir = str(tmp_path / "dataplane")
    with ExitStack() as stack:
        pg = stack.enter_context(private_postgres())
        upgrade(pg.url)
        _write_world(pg.url)
        serve, where = stack.enter_context(_serve(tmp_path, pg))
        token_file = Path(where["data"]) / "secrets" / "control_token"
        assert wait_until(token_file.exists, 30)
        proxy_port = free_port()
        listen = f"127.0.0.1:{proxy_port}"
        builtin = (sys.executable, "-m", "cloudseed", "--log-level", "warning", "proxy",
                   "--listen", listen, "--network-id", NETWORK,
                   "--agent-socket", where["socket"])
        config = tmp_path / "haproxy.conf"
        config.write_text(render_config(config_for(
            ProxyScope(network_id=NETWORK), [ListenAddress.parse(listen)], where["socket"],
            tmp_path, ProxySettings(), inherited_fds=(3,))))
        haproxy = (HAPROXY, "-db", "-f", str(config))
        supervise.start(runner, state_dir, "proxy-faults", "", builtin, grace_seconds=5.0,
                        sockets=[listen])

        def stop_proxies() -> None:
            for state in supervise.observe(state_dir).values():
                supervise.stop(runner, state, 5.0)

        stack.callback(stop_proxies)

        def answered() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=5,
                                                  source_address=(_ip(0), 0))
                conn.request("GET", DOC)
                return conn.getresponse().status == 200
            except OSError:
                return False

        assert wait_until(answered, RECOVERY_SECONDS), (tmp_path / "serve.log").read_text()
        guests = [Guest(i, proxy_port, tally, stop) for i in range(GUESTS)]
        operator = Operator(int(where["control"]), token_file.read_text().strip(), stop)
        for thread in [*guests, operator]:
            thread.start()
        began = time.monotonic()
        tally.enter("warm-up")

        def fault(phase: str, act: Callable[[], None]) -> None:
            tally.enter(phase)
            act()
            time.sleep(SETTLE_SECONDS)

        def kill(*words: str) -> Callable[[], None]:
            def act() -> None:
                pid = _tier_pid(serve.pid, *words)
                assert pid, f"no {words} process to kill"
                os.kill(pid, signal.SIGKILL)
            return act

        def kill_api_child(renderer: bool) -> Callable[[], None]:
            """The API master's children are its workers and the ready map's renderer."""
            def act() -> None:
                pid = next((child for child in _children(_tier_pid(serve.pid, "api"))
                            if (_comm(child) == RENDERER_NAME) == renderer), 0)
                assert pid, f"no API child to kill (renderer: {renderer})"
                os.kill(pid, signal.SIGKILL)
            return act

        def proxy_state() -> supervise.ProcessState:
            return supervise.observe(state_dir)["proxy-faults"]

        time.sleep(SETTLE_SECONDS)
        fault("kill agent", kill("agent"))
        fault("kill API worker", kill_api_child(renderer=False))
        fault("kill renderer", kill_api_child(renderer=True))
        fault("kill API master", kill("api"))
        fault("restart proxy", lambda: supervise.replace(runner, proxy_state(), builtin))
        fault("switch to haproxy", lambda: supervise.replace(runner, proxy_state(), haproxy))
        fault("kill agent (haproxy)", kill("agent"))
        fault("restart haproxy", lambda: supervise.replace(runner, proxy_state(), haproxy))
        fault("switch to built-in", lambda: supervise.replace(runner, proxy_state(), builtin))
        tally.enter("store outage")
        pg.stop()
        time.sleep(OUTAGE_SECONDS)
        pg.start()
        tally.enter("store back")
        time.sleep(SETTLE_SECONDS * 2)
        tally.enter("done")
        stop.set()
        for thread in [*guests, operator]:
            thread.join(60)
        elapsed = time.monotonic() - began

        # Every acknowledged write is stored, as written, and reaches its guest.
        with open_store(pg.url) as store:
            stored = {(s.id, k): v for s in store.list_servers()
                      for k, v in (s.metadata or {}).items() if k.startswith("w")}
        lost = {k: v for k, v in operator.acked.items() if stored.get(k) != v}
        misapplied = {k: v for k, v in stored.items()
                      if k not in operator.acked and operator.unacked.get(k) != v}

        def guest_sees_all() -> bool:
            for index in range(GUESTS):
                conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10,
                                                  source_address=(_ip(index), 0))
                conn.request("GET", DOC)
                meta = json.loads(conn.getresponse().read()).get("meta", {})
                want = {k: v for (s, k), v in operator.acked.items() if s == _uuid(index)}
                if any(meta.get(k) != v for k, v in want.items()):
                    return False
            return True

        visible = wait_until(guest_sees_all, RECOVERY_SECONDS)

        # serve stops; nothing of it is left.
        tree = [serve.pid, *descendants(serve.pid)]
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        wait_until(lambda: not any(alive(pid) for pid in tree), 15)
        left = [pid for pid in tree if alive(pid)]

    total = sum(tally.ok.values()) + sum(tally.failed.values()) + tally.foreign
    print(f"\nfault injection: {total} guest requests in {elapsed:.1f} s, "
          f"{len(operator.acked)} control writes acknowledged, "
          f"{len(operator.unacked)} refused ({dict(operator.refusals)}); "
          f"{tally.resent} idempotent re-sends after a closed keep-alive connection")
    for phase in tally.started_at:
        failures = {cause: n for (p, cause), n in tally.failed.items() if p == phase}
        last = tally.last_failure.get(phase)
        recovery = f"{last - tally.started_at[phase]:.2f} s" if last else "-"
        print(f"  {phase:22s} ok {tally.ok[phase]:6d}  failed {failures or 0}  "
              f"last failure after {recovery}")
    assert tally.foreign == 0, "a guest got another server's data"
    assert not lost, f"acknowledged writes lost: {lost}"
    assert not misapplied, f"writes stored that were never made: {misapplied}"
    assert visible, "an acknowledged write never reached its guest"
    process_faults = {p for p in tally.started_at if p not in ("store outage", "store back")}
    failed_on_process_faults = {k: n for k, n in tally.failed.items() if k[0] in process_faults}
    assert not failed_on_process_faults, failed_on_process_faults
    outage_causes = {cause for (p, cause), _ in tally.failed.items()
                     if p in ("store outage", "store back")}
    assert outage_causes <= {"503+Retry-After"}, outage_causes
    assert set(operator.refusals) <= {"503+Retry-After"}, operator.refusals
    assert not left, f"still running after serve stopped: {left}"
