"""``bench/run --scale``: what 100,000 registered servers cost.

Figures, in the order they are taken:
- import time (``Run.load_fleet``, the bulk import of the whole fleet);
- API start to serving: spawn until it answers, and until the first signed
  request gets its document;
- first-request latency of a cold server (never rendered yet), a few samples;
- a warm pass over every server (one request each), then the API's RSS with
  all of them rendered;
- change-to-visible under load: while a storm runs, change a server's
  metadata in the store and poll as that guest until the new value shows.
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
from cloudseed.auth.signing import sign_instance_id

if TYPE_CHECKING:
    from bench.main import Run

META_DATA = "/openstack/2018-08-27/meta_data.json"
COLD_SAMPLES = 5
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
    api = run.stack.service("api")
    facts["api_start_to_listening_ms"] = _ms(api.ready_after_s)
    first = http_get(api.target, META_DATA, _signed(run.secret, run.vms[0]), timeout=30)
    facts["api_start_to_first_document_ms"] = _ms(time.monotonic() - api.started_at)
    facts["api_first_document_status"] = first.status

    # Servers far apart in the fleet, none requested before.
    cold = [run.vms[(i + 1) * n // (COLD_SAMPLES + 1)] for i in range(COLD_SAMPLES)]
    times = [http_get(api.target, META_DATA, _signed(run.secret, v), timeout=30) for v in cold]
    facts["cold_first_request_ms"] = [_ms(r.seconds) for r in times]
    facts["cold_first_request_statuses"] = sorted({r.status for r in times})

    guard = MemoryGuard(api.pid)
    warm = run_load(LoadSpec(api.target, run.scripts["warm-api"], "keepalive", 50, 0.0, 1800.0,
                             max_crawls=n), [api.pid], on_start=guard.watch)
    guard.stop()
    facts["warm_pass"] = (f"{warm.ok} ok, {warm.errors} errors in {warm.elapsed_s:.1f} s "
                          f"({warm.stats['rps']:.0f} req/s)")
    rss = procfs.tree_rss_bytes([api.pid])
    facts["api_rss_mib"] = round(rss / 2**20, 1)
    facts["api_rss_servers_warm"] = warm.ok
    if warm.ok:
        facts["api_rss_kib_per_warm_server"] = round(rss / warm.ok / 1024, 1)
    if guard.tripped:
        facts["warm_pass_stopped"] = (
            f"API RSS passed {guard.limit_bytes / 2**30:.1f} GiB (half the memory available "
            "at start); stopped early so the machine stays usable")
    facts.update(change_to_visible(run))
    return facts


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
                if procfs.tree_rss_bytes([self.pid]) > self.limit_bytes:
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
    script = run.scripts["guest" if chain else "api"]
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
