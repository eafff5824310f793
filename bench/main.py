"""``bench/run``: load a fleet, start the tiers and the reference servers, measure.

    bench/run                 10,000 servers, every row (several minutes): the cold
                              headline rows beside the real Nova 34 and Neutron 29,
                              then the warm rows; ratios and targets printed last
    bench/run --smoke         200 servers, short rows; fails only on errors
    bench/run --scale         100,000 servers: import, memory, start, cold, changes
    bench/run --rows cold,nova  only rows whose id starts with one of these

Results go to bench/results/<time>.json (and latest.json); bench/README.md
says how to read them.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import crawl, docroot, fleet, procfs, report, scripts
from bench.fleetload import bulk_available, import_fleet
from bench.rows import Outcome, Row, Timing, measure, table
from bench.stack import Stack, tier_available

BENCH = Path(__file__).resolve().parent
META_DATA_PATH = f"/openstack/{crawl.OPENSTACK_VERSION}/meta_data.json"
# The warm pass crawls each VM once, one path; far more than enough.
WARM_PASS_LIMIT_SECONDS = 600.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CI: 200 servers, short rows, no errors")
    p.add_argument("--scale", action="store_true", help="100,000 servers: the scale figures")
    p.add_argument("--servers", type=int,
                   help="fleet size (default 10,000; smoke 200; scale 100,000)")
    p.add_argument("--workers", type=int, default=2,
                   help="workers of `cloudseed api` and of Nova under uwsgi (default 2)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per row (default 2)")
    p.add_argument("--duration", type=float, help="measured seconds per row (default 5)")
    p.add_argument("--retries", type=int, help="re-runs of a noisy row (default 2)")
    p.add_argument("--noise-cores", type=float, default=0.2,
                   help="foreign CPU (cores) above which a row is noisy (default 0.2)")
    p.add_argument("--rows", help="comma-separated row-id prefixes to run")
    p.add_argument("--show-noisy", action="store_true", help="print a noisy row's figures anyway")
    p.add_argument("--gc-log", action="store_true",
                   help="log every GC pause ≥ 1 ms of the cloudseed tiers (bench/gcwatch) and "
                        "show them beside each row's tail latency")
    p.add_argument("--no-ready-map", action="store_true",
                   help="api workers without the per-host ready map (each reads and renders)")
    p.add_argument("--access-log", action="store_true",
                   help="keep the API's per-request access log on (default off)")
    p.add_argument("--results-dir", type=Path, default=BENCH / "results")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, configs)")
    args = p.parse_args(argv)
    if args.smoke:
        defaults = {"servers": 200, "warmup": 0.2, "duration": 1.0, "retries": 0}
    elif args.scale:
        defaults = {"servers": 100_000, "warmup": 2.0, "duration": 10.0, "retries": 0}
    else:
        defaults = {"servers": 10_000, "warmup": 2.0, "duration": 5.0, "retries": 2}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


class Run:
    """One benchmark run: its directory, fleet, scripts and stack."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="cloudseed-bench-"))
        # nginx's worker runs as nobody and must read the docroot.
        self.dir.chmod(0o755)
        self.secret = secrets.token_hex(32)
        self.gc_log = self.dir / "gc.log"
        self.vms = fleet.vms(args.servers)
        self.docroot = self.dir / "docroot"
        docroot.write_docroot(self.docroot, crawl.crawl_documents())
        self.paths = crawl.crawl_templates()
        # Written when a row first needs one: at a million VMs each is ~100 MB.
        self._scripts: dict[str, Path] = {}
        self.store_url = ""
        self.facts: dict[str, Any] = {}
        self.stack = Stack(self.dir, "", self.secret, self.docroot, self.tier_env(),
                           workers=args.workers, servers=args.servers)
        self.warmed = False

    def script(self, name: str) -> Path:
        """The load script ``name``: a kind of client (``scripts.KINDS``), ``-ref``
        for the reference servers, ``warm-`` for one path per VM; ``storm-api`` is
        the cold storm's one ``meta_data.json`` per VM."""
        name = "warm-api" if name == "storm-api" else name
        if name not in self._scripts:
            kind = name.removeprefix("warm-").removesuffix("-ref")
            paths = [META_DATA_PATH] if name.startswith("warm-") else self.paths
            self._scripts[name] = scripts.write_script(
                self.dir / f"{name}.script", kind, self.vms, paths, self.secret.encode(),
                same_mac=name.endswith("-ref"))
        return self._scripts[name]

    def tier_env(self) -> dict[str, str]:
        env = {
            # The bench recycles its fleet far faster than VMs reboot: keep the
            # agent's limiter in the path, but never refusing.
            "CLOUDSEED_AGENT_RATE_LIMIT_PER_SECOND": "1000000",
            "CLOUDSEED_AGENT_RATE_LIMIT_BURST": "1000000",
        }
        if not self.args.scale:
            # Rows: every server warm at once. --scale measures the shipped
            # defaults, whose memory budget is what the targets are about.
            env["CLOUDSEED_API_CACHE_MAX_SERVERS"] = str(max(20_000, self.args.servers))
        if not self.args.access_log:
            env["CLOUDSEED_API_ACCESS_LOG"] = "false"
        if self.args.no_ready_map:
            env["CLOUDSEED_API_READY_MAP"] = "false"
        if self.args.gc_log:
            env["PYTHONPATH"] = str(BENCH / "gcwatch")
            env["BENCH_GC_LOG"] = str(self.gc_log)
        return env

    def load_fleet(self) -> None:
        if not bulk_available():
            self.facts["import"] = "bulk import not available"
            return
        print(f"bench: importing {len(self.vms)} servers …", file=sys.stderr)
        imported = import_fleet(self.dir, len(self.vms))
        self.store_url = imported.store_url
        self.stack.store_url = imported.store_url
        self.facts["import_seconds"] = round(imported.seconds, 2)
        self.facts["import_servers_per_second"] = round(imported.servers / imported.seconds, 1)

    def warm_fleet(self) -> None:
        """Crawl every VM once (one path) so warm rows find every server rendered."""
        from bench.load import LoadSpec, run_load

        via = "agent" if tier_available("agent") else "api"
        svc = self.stack.service(via)
        spec = LoadSpec(svc.target, self.script(f"warm-{via}"), "keepalive", 50, 0.0,
                        WARM_PASS_LIMIT_SECONDS, max_crawls=len(self.vms))
        result = run_load(spec, self.stack.pids(self.stack.chain(via)))
        self.facts[f"warm_pass_via_{via}"] = (
            f"{result.ok} ok, {result.errors} errors in {result.elapsed_s:.1f} s")
        self.warmed = True

    def unavailable(self, row: Row) -> str:
        if row.reference or row.anchor:
            return ""
        missing = self.stack.missing_tiers(row.service)
        if missing:
            return "tier not available: " + ", ".join(missing)
        if not self.store_url:
            return "tier not available: bulk import"
        return ""

    def run_row(self, row: Row, timing: Timing) -> Outcome:
        why = self.unavailable(row)
        if why:
            return Outcome(row, "unavailable", why)
        try:
            if not row.reference and not row.cold and not self.warmed:
                self.warm_fleet()
            svc = self.stack.service(row.service)

            def forget() -> None:
                self.stack.restart_cold(row.service)

            outcome = measure(row, svc.target, self.script(row.script),
                              lambda: self.stack.pids(self.stack.chain(row.service)),
                              timing, len(self.vms), forget if row.cold else None)
            if self.args.gc_log and outcome.result is not None:
                tested = procfs.process_tree(self.stack.pids(self.stack.chain(row.service)))
                outcome.gc = gc_pauses(self.gc_log, outcome.result.window, tested)
            return outcome
        except (RuntimeError, OSError) as exc:
            return Outcome(row, "failed", str(exc))

    def close(self) -> None:
        started = time.monotonic()
        self.stack.stop_all()
        print(f"bench: stopped every server in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        if self.args.keep:
            print(f"bench: run directory kept: {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def gc_pauses(log: Path, window: tuple[float, float], pids: set[int]) -> dict[str, Any]:
    """The pauses bench/gcwatch logged in ``pids`` that ended inside ``window``."""
    pauses: list[tuple[int, float]] = []
    try:
        lines = log.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        pid, generation, ms, ended = line.split()
        if int(pid) in pids and window[0] <= float(ended) <= window[1]:
            pauses.append((int(generation), float(ms)))
    return {"count": len(pauses), "max_ms": max((ms for _, ms in pauses), default=0.0),
            "total_ms": round(sum(ms for _, ms in pauses), 2),
            "gen2": sum(1 for gen, _ in pauses if gen == 2)}


def selected(rows: list[Row], spec: str | None) -> list[Row]:
    if not spec:
        return rows
    prefixes = [p.strip() for p in spec.split(",") if p.strip()]
    return [r for r in rows if any(r.id.startswith(p) for p in prefixes)]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version()}


def run_rows(run: Run, args: argparse.Namespace) -> tuple[list[Outcome], dict[str, Any]]:
    timing = Timing(args.warmup, args.duration, args.retries, args.noise_cores)
    rows = selected(table(), args.rows)
    order = {row.id: i for i, row in enumerate(rows)}
    # Cold rows restart the tiers: run them after the warm rows (which share
    # the pre-warmed api and agent); print them first, they are the headline.
    rows.sort(key=lambda r: r.cold)
    outcomes = []
    for row in rows:
        started = time.monotonic()
        outcome = run.run_row(row, timing)
        s = outcome.summary()
        figures = (f"{s['rps']:.0f} req/s p99 {s['p99_ms']:.2f} ms err {s['errors']}"
                   if outcome.result else "")
        print(f"bench: {row.id:<24} {time.monotonic() - started:5.1f}s {outcome.status:<11} "
              f"{figures} {outcome.note}", file=sys.stderr)
        outcomes.append(outcome)
    outcomes.sort(key=lambda o: order[o.row.id])
    return outcomes, {"timing": timing.__dict__, "workers": args.workers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run = Run(args)
    try:
        run.load_fleet()
        if args.scale:
            from bench.scale import run_scale

            scale_facts = run_scale(run)
            found = scale_facts.pop("targets", [])
            report.print_facts("scale", {**run.facts, **scale_facts})
            print("\ntargets (issue #17, --scale)")
            print("\n".join(f"  {line}" for line in found))
            scale_facts["targets"] = found
            path = report.write_results(args.results_dir, f"scale-{stamp}", {
                "kind": "scale", "machine": machine(), "servers": args.servers,
                "facts": {**run.facts, **scale_facts}})
            print(f"\nresults: {path}")
            return 0
        outcomes, params = run_rows(run, args)
    finally:
        run.close()
    print()
    print(f"cloudseed bench: {args.servers} servers, crawl of {len(run.paths)} paths per VM, "
          f"{args.warmup:g} s warm-up + {args.duration:g} s per row")
    report.print_table(outcomes, args.show_noisy)
    report.print_tails(outcomes)
    found = report.criteria({o.row.id: o for o in outcomes}, args.show_noisy)
    report.print_criteria(found)
    report.print_facts("facts", run.facts)
    path = report.write_results(args.results_dir, stamp, {
        "kind": "smoke" if args.smoke else "full",
        "machine": machine(), "servers": args.servers, "crawl_paths": run.paths,
        "access_log": args.access_log, **params, "facts": run.facts,
        "rows": [o.summary() for o in outcomes],
        "criteria": [c.__dict__ for c in found],
    })
    print(f"\nresults: {path}")
    if args.smoke:
        return smoke_verdict(outcomes)
    return 0


def smoke_verdict(outcomes: list[Outcome]) -> int:
    """Smoke fails on errors and on tiers that would not start; never on speed or noise.

    The real Nova and Neutron must start and answer, but their errors under load
    are theirs to report, not ours to fail on (Neutron 29's agent listens with a
    backlog of 5, so haproxy in front of it answers 503 in a 50-client storm)."""
    bad = [o for o in outcomes
           if o.status == "failed" or (o.result and o.result.errors and not o.row.anchor)
           or (o.row.anchor and o.result is not None and not o.result.ok)]
    for o in bad:
        errors = o.result.errors if o.result else "-"
        print(f"smoke: {o.row.id}: {o.status} {o.note} errors={errors}", file=sys.stderr)
    ran = [o for o in outcomes if o.result is not None]
    print(f"smoke: {len(ran)} rows ran, {len(bad)} with errors or failures, "
          f"{sum(o.status == 'unavailable' for o in outcomes)} tiers not available")
    return 1 if bad or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
