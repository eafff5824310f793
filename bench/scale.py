"""``bench/run --scale [--servers 1000000]``: what a large fleet costs.

Figures, in the order they are taken:
- import time (``Run.load_fleet``, the bulk import of the whole fleet);
- API start to ready (its /healthz says 200 on every worker), and to the
  first signed request's document; the agent's start to ready (map built);
- first-request latency of servers never asked before, spread over the fleet;
- RSS of every process (API master and each worker, agent, proxy) after start,
  after the change storm, and after a warm pass (one request per server,
  bounded in time and by a memory guard);
- change-to-visible under load: while a storm runs, change a server's
  metadata in the store and poll as that guest until the new value shows;
- issue #17's scale targets, pass / FAIL.
"""

from __future__ import annotations

import dataclasses
import secrets
import statistics
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from bench import fleet, procfs
from bench.load import LoadResult, LoadSpec, run_load
from bench.probe import http_get
from bench.stack import tier_available
from cloudseed.api.service import RENDERER_NAME
from cloudseed.auth.signing import sign_instance_id

if TYPE_CHECKING:
    from bench.main import Run

META_DATA = "/openstack/2018-08-27/meta_data.json"
COLD_SAMPLES = 20
# The warm pass stops after this long: at a million servers it is a sample.
WARM_PASS_SECONDS = 180.0
CHANGE_SAMPLES = 5
# A change must show within a second (DESIGN §3); stop polling well after.
CHANGE_POLL_LIMIT_SECONDS = 10.0
CHANGE_POLL_INTERVAL_SECONDS = 0.005
STORM_SECONDS = 20.0


def _signed(secret: str, v: fleet.Vm) -> dict[str, str]:
    return {
        "X-Forwarded-For": v.ip,
        "X-Instance-ID": v.server_id,
        "X-Tenant-ID": fleet.PROJECT_ID,
        "X-Instance-ID-Signature": sign_instance_id(secret.encode(), v.server_id),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def run_scale(run: Run) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if not run.store_url or not tier_available("api"):
        return {"scale": "tier not available: api or bulk import"}
    n = len(run.vms)
    api = run.stack.service("api", wait_map=False)
    facts["api_start_to_ready_ms"] = _ms(api.ready_after_s)
    first = http_get(api.target, META_DATA, _signed(run.secret, run.vms[0]), timeout=30)
    facts["api_start_to_first_document_ms"] = _ms(time.monotonic() - api.started_at)
    facts["api_first_document_status"] = first.status
    # The renderer's first whole-fleet pass (workers serve from the store meanwhile).
    built = run.stack.wait_ready_map()
    facts["ready_map_built_after_api_start_s"] = round(
        time.monotonic() - api.started_at if built else 0.0, 1)
    data = run.stack.ready_map_path() / "data.mdb"
    if data.exists():
        size = data.stat().st_blocks * 512  # bytes on disk, not the sparse length
        facts["ready_map_mib"] = round(size / 2**20, 1)
        facts["ready_map_bytes_per_server"] = round(size / n)

    # Servers spread over the whole fleet, none requested before.
    cold = [run.vms[(i + 1) * n // (COLD_SAMPLES + 1)] for i in range(COLD_SAMPLES)]
    times = [http_get(api.target, META_DATA, _signed(run.secret, v), timeout=30) for v in cold]
    cold_ms = sorted(_ms(r.seconds) for r in times)
    facts["cold_first_request_ms_p50_max"] = [round(statistics.median(cold_ms), 2), cold_ms[-1]]
    facts["cold_first_request_statuses"] = sorted({r.status for r in times})
    if tier_available("agent"):
        agent = run.stack.service("agent")
        facts["agent_start_to_ready_ms"] = _ms(agent.ready_after_s)
    facts.update(memories(run, "after_start"))

    facts.update(change_to_visible(run))
    facts.update(memories(run, "after_storm"))

    guard = MemoryGuard(api.pid)
    warm = run_load(LoadSpec(api.target, run.script("warm-api"), "keepalive", 50, 0.0,
                             WARM_PASS_SECONDS, max_crawls=n), [api.pid], on_start=guard.watch)
    guard.stop()
    facts["warm_pass"] = (f"{warm.ok} of {n} servers, {warm.errors} errors in "
                          f"{warm.elapsed_s:.1f} s ({warm.stats['rps']:.0f} req/s)")
    facts.update(memories(run, "after_warm_pass"))
    if guard.tripped:
        facts["warm_pass_stopped"] = (
            f"API RSS passed {guard.limit_bytes / 2**30:.1f} GiB (half the memory available "
            "at start); stopped early so the machine stays usable")
    facts["targets"] = targets({**run.facts, **facts})
    return facts


def memory(run: Run, field: str = "VmRSS") -> dict[str, Any]:
    """Memory per process of every cloudseed tier running now, MiB: VmRSS, or with
    ``field="RssAnon"`` private memory only (without mapped file pages: the ready
    map is the host's page cache, shared by every worker)."""
    out: dict[str, Any] = {}
    for name in ("api", "agent", "proxy_chain"):
        try:
            pid = run.stack.running_pid(name)
        except KeyError:
            continue
        by_pid = procfs.rss_by_process([pid], field)
        sizes = {p: round(b / 2**20, 1) for p, b in by_pid.items()}
        if len(sizes) == 1:
            out[name] = next(iter(sizes.values()))
            continue
        renderer = [p for p in sizes if procfs.process_name(p) == RENDERER_NAME]
        out[name] = {"master": sizes.pop(pid), "workers": [
            size for p, size in sizes.items() if p not in renderer]}
        if renderer:
            out[name]["renderer"] = sizes[renderer[0]]
    return out


def memories(run: Run, when: str) -> dict[str, Any]:
    return {f"rss_mib_{when}": memory(run), f"private_mib_{when}": memory(run, "RssAnon")}


# Issue #17's targets for --scale at 1,000,000 servers.
IMPORT_S, READY_MS, FIRST_MS, VISIBLE_MS = 300.0, 10_000.0, 1.0, 1000.0
API_WORKER_MIB, AGENT_MIB = 1024.0, 256.0


def targets(f: dict[str, Any]) -> list[str]:
    def line(ok: bool, text: str) -> str:
        return f"{'pass' if ok else 'FAIL'}  {text}"

    out = []
    if "import_seconds" in f:
        out.append(line(f["import_seconds"] <= IMPORT_S,
                        f"import {f['import_seconds']:.0f} s ≤ {IMPORT_S:.0f} s"))
    out.append(line(f["api_start_to_ready_ms"] <= READY_MS,
                    f"API ready {f['api_start_to_ready_ms']:.0f} ms ≤ {READY_MS:.0f} ms"))
    worst = f["cold_first_request_ms_p50_max"][1]
    out.append(line(worst <= FIRST_MS, f"first request of any server (max of {COLD_SAMPLES}, "
                    f"new connection) {worst} ms ≤ {FIRST_MS} ms"))
    if f.get("change_to_visible_ms"):
        late = max(f["change_to_visible_ms"]) if not f["change_not_visible_within_10s"] else 1e9
        out.append(line(late <= VISIBLE_MS, f"change visible through the full chain, max "
                        f"{late:.0f} ms ≤ {VISIBLE_MS:.0f} ms"))
    # The budget is on what a process holds itself (RssAnon): the ready map's pages
    # are the host's page cache, counted once per host and reclaimable; VmRSS, which
    # counts them in every worker that touched them, is printed beside it.
    for kind in ("private", "rss"):
        taken = [f[k] for k in (f"{kind}_mib_after_start", f"{kind}_mib_after_storm",
                                f"{kind}_mib_after_warm_pass") if k in f]
        api_workers = [w for r in taken if isinstance(r.get("api"), dict)
                       for w in r["api"]["workers"]]
        api_single = [r["api"] for r in taken if isinstance(r.get("api"), float)]
        worst_api = max(api_workers + api_single, default=0.0)
        agents = [r["agent"] for r in taken if isinstance(r.get("agent"), float)]
        if kind == "rss":
            out.append(f"info  API worker VmRSS max {worst_api:.0f} MiB (with mapped pages "
                       f"of the ready map); agent {max(agents, default=0.0):.0f} MiB")
            continue
        out.append(line(worst_api <= API_WORKER_MIB, f"API worker private memory max "
                        f"{worst_api:.0f} MiB ≤ {API_WORKER_MIB:.0f} MiB"))
        if agents:
            out.append(line(max(agents) <= AGENT_MIB, f"agent private memory max "
                            f"{max(agents):.0f} MiB ≤ {AGENT_MIB:.0f} MiB"))
    return out


class MemoryGuard:
    """Stops the warm pass before the API eats the machine (other work runs here too)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.limit_bytes = procfs.available_memory_bytes() // 2
        self.tripped = False
        self._done = threading.Event()

    def watch(self, loadgen: subprocess.Popen[str]) -> None:
        def poll() -> None:
            while not self._done.wait(0.5):
                # Private memory: mapped ready-map pages are reclaimable page cache.
                if sum(procfs.rss_by_process([self.pid], "RssAnon").values()) > self.limit_bytes:
                    self.tripped = True
                    loadgen.terminate()
                    return

        threading.Thread(target=poll, daemon=True).start()

    def stop(self) -> None:
        self._done.set()


def change_to_visible(run: Run) -> dict[str, Any]:
    """Change metadata through the store during a storm; time until the guest sees it."""
    from cloudseed.store import open_store

    chain = tier_available("proxy") and tier_available("agent")
    storm_service = "proxy_chain" if chain else "api"
    svc = run.stack.service(storm_service)
    script = run.script("guest" if chain else "api")
    spec = LoadSpec(svc.target, script, "close", 50, 0.0, STORM_SECONDS)
    storm: list[LoadResult] = []
    thread = threading.Thread(
        target=lambda: storm.append(run_load(spec, run.stack.pids(run.stack.chain(storm_service)))))
    thread.start()
    api = run.stack.service("api")
    store = open_store(run.store_url)
    latencies: list[float] = []
    try:
        time.sleep(2.0)  # let the storm reach its pace
        for i in range(CHANGE_SAMPLES):
            v = run.vms[(i * 7919) % len(run.vms)]
            token = secrets.token_hex(8)
            server = store.get_server(v.server_id)
            changed = dataclasses.replace(server, metadata={**server.metadata, "bench": token})
            started = time.monotonic()
            with store.write() as writer:
                writer.put_server(changed)
            while time.monotonic() - started < CHANGE_POLL_LIMIT_SECONDS:
                if chain:
                    reply = http_get(svc.target, META_DATA, timeout=5, source=v.ip)
                else:
                    reply = http_get(api.target, META_DATA, _signed(run.secret, v), timeout=5)
                if token.encode() in reply.body:
                    latencies.append(time.monotonic() - started)
                    break
                time.sleep(CHANGE_POLL_INTERVAL_SECONDS)
            time.sleep(1.0)
    finally:
        store.close()
        thread.join()
    out: dict[str, Any] = {
        "change_to_visible_via": "full chain (guest view)" if chain else "api",
        "change_to_visible_ms": [_ms(x) for x in latencies],
        "change_not_visible_within_10s": CHANGE_SAMPLES - len(latencies),
    }
    if latencies:
        out["change_to_visible_p50_ms"] = _ms(statistics.median(latencies))
        out["change_to_visible_max_ms"] = _ms(max(latencies))
    if storm:
        s = storm[0]
        out["storm_during_changes"] = (
            f"{s.stats['rps']:.0f} req/s, p99 {s.stats['latency_us']['p99'] / 1000:.1f} ms, "
            f"{s.errors} errors, {s.foreign_cores:.2f} foreign cores")
    return out
