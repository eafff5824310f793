"""Run the C load generator once and account for the CPU of its window.

The generator prints ``# measure-start`` / ``# measure-end`` as its measured
window (after the warm-up) opens and closes; CPU is sampled at exactly those
two moments, for the machine and for the processes under test.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procfs

LOADGEN = Path(__file__).resolve().parent / "build" / "loadgen"


@dataclass(frozen=True)
class LoadSpec:
    target: str  # tcp:127.0.0.1:PORT or unix:PATH
    script: Path
    mode: str  # close | keepalive
    concurrency: int
    warmup_s: float
    duration_s: float
    max_crawls: int = 0  # 0 = until the duration ends


@dataclass(frozen=True)
class LoadResult:
    stats: dict[str, Any]  # the generator's JSON
    server_cpu_s: float
    loadgen_cpu_s: float
    foreign_cores: float  # machine CPU not spent by the processes under test, in cores
    softirq_cores: float
    # The measured window on CLOCK_MONOTONIC (the clock GC pauses are logged on).
    window: tuple[float, float] = (0.0, 0.0)
    # Machine-wide TCP counters over the window (procfs.TCP_COUNTERS).
    tcp: dict[str, int] | None = None

    @property
    def ok(self) -> int:
        return int(self.stats["ok"])

    @property
    def errors(self) -> int:
        return int(self.stats["errors"])

    @property
    def elapsed_s(self) -> float:
        return float(self.stats["elapsed_s"])


def command(spec: LoadSpec) -> list[str]:
    argv = [
        str(LOADGEN),
        "--target",
        spec.target,
        "--script",
        str(spec.script),
        "--mode",
        spec.mode,
        "--concurrency",
        str(spec.concurrency),
        "--warmup",
        str(spec.warmup_s),
        "--duration",
        str(spec.duration_s),
    ]
    if spec.max_crawls:
        argv += ["--max-crawls", str(spec.max_crawls)]
    return argv


def run_load(
    spec: LoadSpec,
    server_pids: list[int],
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
) -> LoadResult:
    """``on_start`` gets the generator's process (SIGTERM ends it early, with results)."""
    proc = subprocess.Popen(command(spec), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if on_start is not None:
        on_start(proc)
    start: tuple[procfs.MachineCpu, int, int] | None = None
    end: tuple[procfs.MachineCpu, int, int] | None = None
    stats: dict[str, Any] | None = None
    window = [0.0, 0.0]
    tcp = [procfs.tcp_counters(), procfs.tcp_counters()]

    def sample() -> tuple[procfs.MachineCpu, int, int]:
        return (procfs.machine_cpu(), procfs.tree_ticks(server_pids), procfs.tree_ticks([proc.pid]))

    for line in proc.stdout:
        if line.startswith("# measure-start"):
            start = sample()
            window[0], tcp[0] = time.monotonic(), procfs.tcp_counters()
        elif line.startswith("# measure-end"):
            end = sample()
            window[1], tcp[1] = time.monotonic(), procfs.tcp_counters()
        elif line.startswith("{"):
            stats = json.loads(line)
    code = proc.wait()
    if code != 0 or stats is None or start is None or end is None:
        raise RuntimeError(f"loadgen failed (exit {code}): {' '.join(command(spec))}")
    hz = procfs.TICKS_PER_SECOND
    server_cpu = (end[1] - start[1]) / hz
    loadgen_cpu = (end[2] - start[2]) / hz
    busy = (end[0].busy_ticks - start[0].busy_ticks) / hz
    softirq = (end[0].softirq_ticks - start[0].softirq_ticks) / hz
    elapsed = float(stats["elapsed_s"]) or 1e-9
    return LoadResult(
        stats=stats,
        server_cpu_s=server_cpu,
        loadgen_cpu_s=loadgen_cpu,
        foreign_cores=max(0.0, busy - server_cpu - loadgen_cpu) / elapsed,
        softirq_cores=softirq / elapsed,
        window=(window[0], window[1]),
        tcp={k: tcp[1][k] - tcp[0].get(k, 0) for k in tcp[1]},
    )
