"""The rows of the benchmark table, and how one row is measured.

A row is one load (a script, a mode, a number of clients) against one
service. Every process behind that service counts as "under test": the
agent's row includes the API it forwards to, the full chain includes all
three tiers. A row that ran while the machine was busy with other work is
re-run, up to ``retries`` times, then reported as noisy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadResult, LoadSpec, run_load

MODES = ("close", "keepalive")
LOADED_CLIENTS = 50


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    service: str
    # A key of the run's scripts: api, api-ref, agent, agent-ref, guest,
    # guest-ref, storm-api (meta_data.json only).
    script: str
    mode: str
    concurrency: int = LOADED_CLIENTS
    reference: bool = False
    # Cold: every tier that remembers a server is restarted before each
    # attempt, there is no warm-up, and each VM is crawled at most once.
    cold: bool = False
    # The real Nova / Neutron (bench/anchors.py), run cold like the headline rows.
    anchor: bool = False

    @property
    def headline(self) -> bool:
        return self.cold and not self.anchor


def cold_rows() -> list[Row]:
    """The headline: a boot storm, every request the first for its VM's crawl."""
    rows: list[Row] = []
    for mode in MODES:
        rows += [
            Row(f"cold.api.{mode}", "cloudseed api, N workers", "api", "api", mode, cold=True),
            Row(f"cold.agent.{mode}", "cloudseed agent → static upstream", "agent_static",
                "agent", mode, cold=True),
            Row(f"cold.chain.builtin.{mode}", "full chain: proxy → agent → api", "proxy_chain",
                "guest", mode, cold=True),
            Row(f"cold.chain.shared.{mode}", "full chain: shared front → agent → api",
                "shared_chain", "guest", mode, cold=True),
            Row(f"cold.chain.colocated.{mode}", "full chain: co-located front (answers itself)",
                "colocated_chain", "guest", mode, cold=True),
        ]
    rows += [
        Row("cold.chain.haproxy.close", "full chain: haproxy → agent → api", "haproxy_chain",
            "guest", "close", cold=True),
        Row("cold.unloaded.api", "1 client: cloudseed api", "api", "api", "close",
            concurrency=1, cold=True),
        Row("cold.unloaded.agent", "1 client: agent → static upstream", "agent_static", "agent",
            "close", concurrency=1, cold=True),
        Row("cold.unloaded.chain", "1 client: full chain", "proxy_chain", "guest", "close",
            concurrency=1, cold=True),
        Row("cold.unloaded.chain.shared", "1 client: full chain, shared front", "shared_chain",
            "guest", "close", concurrency=1, cold=True),
        Row("cold.unloaded.chain.colocated", "1 client: full chain, co-located front",
            "colocated_chain", "guest", "close", concurrency=1, cold=True),
        Row("cold.storm.1worker", "meta_data.json storm, api 1 worker", "api_1w", "storm-api",
            "close", cold=True),
        Row("cold.storm.2workers", "meta_data.json storm, api 2 workers", "api_2w", "storm-api",
            "close", cold=True),
    ]
    return rows


def anchor_rows() -> list[Row]:
    """The real Nova and Neutron, same crawl, same workers, same upstream."""
    return [
        Row("nova.close", "Nova 34 metadata, uwsgi N workers", "nova", "api", "close",
            cold=True, anchor=True),
        Row("nova.unloaded", "1 client: Nova 34", "nova", "api", "close", concurrency=1,
            cold=True, anchor=True),
        Row("neutron.agent.close", "Neutron 29 agent → static upstream", "neutron_agent",
            "agent", "close", cold=True, anchor=True),
        Row("neutron.agent.unloaded", "1 client: Neutron 29 agent", "neutron_agent", "agent",
            "close", concurrency=1, cold=True, anchor=True),
        Row("neutron.chain.close", "haproxy → Neutron agent → Nova", "neutron_chain", "guest",
            "close", cold=True, anchor=True),
        Row("neutron.chain.unloaded", "1 client: haproxy → Neutron → Nova", "neutron_chain",
            "guest", "close", concurrency=1, cold=True, anchor=True),
    ]


def warm_rows() -> list[Row]:
    """Secondary: every server already rendered and resolved (a pre-warm pass)."""
    rows: list[Row] = []
    for mode in MODES:
        rows += [
            Row(f"ref.raw_tcp.{mode}", "raw httptools+uvloop, TCP", "raw_tcp", "api-ref", mode,
                reference=True),
            Row(f"ref.nginx.{mode}", "nginx static files, TCP", "nginx", "api-ref", mode,
                reference=True),
            Row(f"api.{mode}", "cloudseed api (signed headers)", "api", "api", mode),
            Row(f"api.noaudit.{mode}", "cloudseed api, access audit off", "api_noaudit", "api",
                mode),
            Row(f"ref.raw_unix.{mode}", "raw httptools+uvloop, Unix", "raw_unix", "agent-ref",
                mode, reference=True),
            Row(f"agent.{mode}", "cloudseed agent → api (Unix)", "agent", "agent", mode),
            Row(f"ref.haproxy_neutron.{mode}", "haproxy (Neutron config) → raw Unix",
                "haproxy_neutron", "guest-ref", mode, reference=True),
            Row(f"proxy.builtin.{mode}", "cloudseed proxy → raw Unix", "proxy_fixed",
                "guest-ref", mode),
            Row(f"proxy.haproxy.{mode}", "haproxy (cloudseed config) → raw Unix",
                "haproxy_fixed", "guest-ref", mode),
            Row(f"proxy.shared.{mode}", "shared front → raw Unix", "shared_fixed",
                "guest-ref", mode),
            Row(f"chain.builtin.{mode}", "full chain: proxy → agent → api", "proxy_chain",
                "guest", mode),
            Row(f"chain.haproxy.{mode}", "full chain: haproxy → agent → api", "haproxy_chain",
                "guest", mode),
        ]
    rows += [
        Row("unloaded.raw_tcp", "1 client: raw httptools, TCP", "raw_tcp", "api-ref",
            "keepalive", concurrency=1, reference=True),
        Row("unloaded.api", "1 client: cloudseed api", "api", "api", "keepalive", concurrency=1),
        Row("unloaded.agent", "1 client: agent → api", "agent", "agent", "keepalive",
            concurrency=1),
        Row("unloaded.chain", "1 client: full chain, new conns", "proxy_chain", "guest", "close",
            concurrency=1),
    ]
    return rows


def table() -> list[Row]:
    return cold_rows() + anchor_rows() + warm_rows()


@dataclass
class Outcome:
    row: Row
    status: str  # ok | noisy | unavailable | failed
    note: str = ""
    result: LoadResult | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # GC pauses of the tiers inside the kept attempt's window (``--gc-log``).
    gc: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.row.id, "title": self.row.title, "mode": self.row.mode,
            "concurrency": self.row.concurrency, "reference": self.row.reference,
            "cold": self.row.cold, "anchor": self.row.anchor, "status": self.status,
            "note": self.note,
            "attempts": self.attempts,
        }
        if self.result is not None:
            out.update(figures(self.result))
        if self.gc is not None:
            out["gc"] = self.gc
        return out


def figures(r: LoadResult) -> dict[str, Any]:
    lat = r.stats["latency_us"]
    ok = max(r.ok, 1)
    return {
        "rps": r.stats["rps"],
        "requests": r.stats["requests"],
        "errors": r.errors,
        "error_kinds": r.stats["error_kinds"],
        "status_codes": r.stats["status"],
        "crawls": r.stats["crawls"],
        "p50_ms": lat["p50"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "max_ms": lat["max"] / 1000,
        "server_cpu_us_per_req": r.server_cpu_s / ok * 1e6,
        "loadgen_cpu_us_per_req": r.loadgen_cpu_s / ok * 1e6,
        "foreign_cores": r.foreign_cores,
        "softirq_cores": r.softirq_cores,
        "elapsed_s": r.elapsed_s,
        "tcp": r.tcp,
    }


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    duration_s: float
    retries: int
    noise_cores: float  # more foreign CPU than this (in cores) makes a row noisy


def measure(
    row: Row,
    target: str,
    script: Path,
    pids: Callable[[], list[int]],
    timing: Timing,
    n_vms: int,
    before_attempt: Callable[[], None] | None = None,
) -> Outcome:
    """Run ``row`` until an attempt is quiet or the retries are spent; keep the quietest."""
    spec = LoadSpec(
        target=target,
        script=script,
        mode=row.mode,
        concurrency=row.concurrency,
        warmup_s=0.0 if row.cold else timing.warmup_s,
        duration_s=timing.duration_s,
        max_crawls=n_vms if row.cold else 0,
    )
    outcome = Outcome(row, "noisy")
    for _ in range(timing.retries + 1):
        if before_attempt is not None:
            before_attempt()
        result = run_load(spec, pids())
        outcome.attempts.append(figures(result))
        if outcome.result is None or result.foreign_cores < outcome.result.foreign_cores:
            outcome.result = result
        if result.foreign_cores <= timing.noise_cores:
            outcome.status = "ok"
            break
    kept = outcome.result
    if row.cold and kept is not None and kept.stats["crawls"] >= n_vms:
        # The fleet ran out before the window closed: the row measured fewer
        # seconds than asked, still every VM once.
        outcome.note = (f"fleet exhausted after {kept.elapsed_s:.1f} s (raise --servers) "
                        + outcome.note).strip()
    if outcome.status == "noisy" and outcome.result is not None:
        outcome.note = (f"other work used {outcome.result.foreign_cores:.2f} cores "
                        f"(limit {timing.noise_cores:.2f}) " + outcome.note).strip()
    return outcome
