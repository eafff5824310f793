"""The table, the ratios the issues ask for, and the JSON results file.

A noisy row (the machine was busy with other work while it ran) prints no
figures, and a ratio that needs it says "noisy" rather than pass or fail:
a figure measured on a busy machine is not a figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.rows import Outcome


@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    verdict: str  # pass | FAIL | noisy | n/a | info (a ratio with no target)
    group: str = "targets"


def _get(outcomes: dict[str, Outcome], row_id: str) -> dict[str, Any] | str | None:
    """The row's figures; "noisy" or None (not run / unavailable / failed) otherwise."""
    outcome = outcomes.get(row_id)
    if outcome is None or outcome.result is None:
        return None
    if outcome.status == "noisy":
        return "noisy"
    return outcome.summary()


def _check(
    name: str,
    outcomes: dict[str, Outcome],
    ids: list[str],
    compute: Callable[..., tuple[str, bool | None]],
    group: str = "targets",
    *,
    show_noisy: bool = False,
) -> Criterion:
    rows = [_get(outcomes, i) for i in ids]
    if any(r is None for r in rows):
        return Criterion(name, "-", "n/a", group)
    if any(r == "noisy" for r in rows):
        if not show_noisy:
            return Criterion(name, "-", "noisy", group)
        # --show-noisy: the value, never a verdict.
        figures = [outcomes[i].summary() for i in ids]
        return Criterion(name, compute(*figures)[0], "noisy", group)
    value, ok = compute(*rows)
    verdict = "info" if ok is None else "pass" if ok else "FAIL"
    return Criterion(name, value, verdict, group)


def _ratio(at_least: float | None, digits: int = 1) -> Callable[..., tuple[str, bool | None]]:
    """ours / theirs in req/s, judged against ``at_least`` (None: shown only)."""
    def compute(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[str, bool | None]:
        ratio = ours["rps"] / max(theirs["rps"], 1e-9)
        value = f"{ratio:.{digits}f}× ({ours['rps']:.0f} / {theirs['rps']:.0f} req/s)"
        return value, None if at_least is None else ratio >= at_least
    return compute


# Issue #17's targets: (what, ours, theirs, at least).
COLD_TARGETS = (
    ("cold api / Nova 34, same workers, new conns ≥ 15×", "cold.api.close", "nova.close", 15.0),
    ("cold agent / Neutron 29 agent, same upstream ≥ 20×", "cold.agent.close",
     "neutron.agent.close", 20.0),
    ("full chain / haproxy→Neutron→Nova, 1 client, cold ≥ 10×", "cold.unloaded.chain",
     "neutron.chain.unloaded", 10.0),
    ("full chain / real chain, 50 clients, no VM repeated ≥ 25×", "cold.chain.builtin.close",
     "neutron.chain.close", 25.0),
    # The same two through the shared front (issue #18 item 4).
    ("shared front chain / real chain, 1 client, cold ≥ 10×", "cold.unloaded.chain.shared",
     "neutron.chain.unloaded", 10.0),
    ("shared front chain / real chain, 50 clients, no VM repeated ≥ 25×",
     "cold.chain.shared.close", "neutron.chain.close", 25.0),
)
# (what, ours, theirs, digits): shown, not judged.
COLD_INFO = (
    ("cold api / Nova 34, 1 client", "cold.unloaded.api", "nova.unloaded", 1),
    ("cold agent / Neutron 29 agent, 1 client", "cold.unloaded.agent", "neutron.agent.unloaded",
     1),
    ("haproxy chain / real chain, 50 clients", "cold.chain.haproxy.close", "neutron.chain.close",
     1),
    ("shared front chain / per-namespace proxy chain, 50 clients, new conns",
     "cold.chain.shared.close", "cold.chain.builtin.close", 2),
    ("shared front chain / per-namespace proxy chain, 50 clients, keep-alive",
     "cold.chain.shared.keepalive", "cold.chain.builtin.keepalive", 2),
    ("shared front chain / per-namespace proxy chain, 1 client",
     "cold.unloaded.chain.shared", "cold.unloaded.chain", 2),
    # Issue #18 item 2: the front answering itself, against the same front relaying.
    ("co-located front / shared front → agent → api, 50 clients, new conns",
     "cold.chain.colocated.close", "cold.chain.shared.close", 2),
    ("co-located front / shared front → agent → api, 50 clients, keep-alive",
     "cold.chain.colocated.keepalive", "cold.chain.shared.keepalive", 2),
    ("co-located front / shared front → agent → api, 1 client",
     "cold.unloaded.chain.colocated", "cold.unloaded.chain.shared", 2),
    ("co-located front / real chain, 1 client", "cold.unloaded.chain.colocated",
     "neutron.chain.unloaded", 1),
    ("co-located front / real chain, 50 clients, no VM repeated", "cold.chain.colocated.close",
     "neutron.chain.close", 1),
)


def criteria(outcomes: dict[str, Outcome], show_noisy: bool = False) -> list[Criterion]:
    """Every target and ratio; with ``show_noisy`` a noisy one shows its value
    (still judged "noisy", never pass or fail)."""

    def check(*args: Any) -> Criterion:
        return _check(*args, show_noisy=show_noisy)

    out = [check(name, outcomes, [ours, theirs], _ratio(target))
           for name, ours, theirs, target in COLD_TARGETS]
    out.append(check(
        "cold CPU per request ≤ 2× warm (api, new conns)", outcomes,
        ["cold.api.close", "api.close"],
        lambda c, w: (f"{c['server_cpu_us_per_req'] / w['server_cpu_us_per_req']:.2f}× "
                      f"({c['server_cpu_us_per_req']:.0f} / {w['server_cpu_us_per_req']:.0f} µs)",
                      c["server_cpu_us_per_req"] <= 2 * w["server_cpu_us_per_req"])))
    out.append(check(
        "second api worker adds ≥ 80 % in a cold storm", outcomes,
        ["cold.storm.2workers", "cold.storm.1worker"],
        lambda two, one: (f"+{(two['rps'] / one['rps'] - 1) * 100:.0f} % "
                          f"({two['rps']:.0f} / {one['rps']:.0f} req/s)",
                          two["rps"] >= 1.8 * one["rps"])))
    out += [check(name, outcomes, [ours, theirs], _ratio(None, digits), "ratios")
            for name, ours, theirs, digits in COLD_INFO]
    out += warm_criteria(outcomes, check)
    return out


def warm_criteria(outcomes: dict[str, Outcome], check: Callable[..., Criterion]
                  ) -> list[Criterion]:
    """The warm path against the reference servers (secondary)."""
    out: list[Criterion] = []
    for mode in ("close", "keepalive"):
        out.append(check(
            f"warm api / raw httptools, {mode} ≥ 0.8", outcomes,
            [f"api.{mode}", f"ref.raw_tcp.{mode}"],
            lambda a, r: (f"{a['rps'] / r['rps']:.2f}", a["rps"] / r["rps"] >= 0.8), "warm"))
    for mode in ("close", "keepalive"):
        # Issue #16: the crawl reads user_data and vendor data (3 of 37 audited).
        out.append(check(
            f"access audit costs ≤ 5 % (api / api with the audit off), {mode}", outcomes,
            [f"api.{mode}", f"api.noaudit.{mode}"],
            lambda a, n: (f"{(1 - a['rps'] / n['rps']) * 100:+.1f} % "
                          f"({a['rps']:.0f} / {n['rps']:.0f} req/s)",
                          a["rps"] >= 0.95 * n["rps"]), "warm"))
    for mode in ("close", "keepalive"):
        out.append(check(
            f"built-in proxy / haproxy (Neutron), {mode} ≥ 0.8", outcomes,
            [f"proxy.builtin.{mode}", f"ref.haproxy_neutron.{mode}"],
            lambda p, h: (f"{p['rps'] / h['rps']:.2f}", p["rps"] / h["rps"] >= 0.8), "warm"))
    for mode in ("close", "keepalive"):
        out.append(check(
            f"warm full chain, {mode}: ≥ 5000 req/s, p99 ≤ 20 ms, 0 errors", outcomes,
            [f"chain.builtin.{mode}"],
            lambda c: (f"{c['rps']:.0f} req/s, p99 {c['p99_ms']:.1f} ms, {c['errors']} err",
                       c["rps"] >= 5000 and c["p99_ms"] <= 20 and c["errors"] == 0), "warm"))
    for row_id, label in (("unloaded.api", "api"), ("unloaded.chain", "full chain")):
        out.append(check(
            f"warm unloaded p50, {label} ≤ 0.5 ms", outcomes, [row_id],
            lambda u: (f"{u['p50_ms']:.3f} ms", u["p50_ms"] <= 0.5), "warm"))
    return out


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


SECTIONS = (
    ("cold (headline): no pre-warm, every VM once, tiers restarted", lambda r: r.headline),
    ("the real Nova 34 and Neutron 29, same crawl, same workers", lambda r: r.anchor),
    ("warm (secondary): every server pre-warmed", lambda r: not r.cold),
)


def print_table(outcomes: list[Outcome], show_noisy: bool) -> None:
    for title, belongs in SECTIONS:
        part = [o for o in outcomes if belongs(o.row)]
        if part:
            print()
            print(title)
            _print_rows(part, show_noisy)


def _print_rows(outcomes: list[Outcome], show_noisy: bool) -> None:
    head = (f"{'row':<24} {'what':<40} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'p99.9':>7} {'err':>5} {'cpu µs/req':>10} {'lg µs':>6}  status")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        s = o.summary()
        prefix = f"{o.row.id:<24} {o.row.title[:40]:<40} {o.row.concurrency:>3} "
        if o.result is None or (o.status == "noisy" and not show_noisy):
            print(prefix + f"{'':>8} {'':>7} {'':>7} {'':>7} {'':>5} {'':>10} {'':>6}  "
                  f"{o.status} {o.note}")
            continue
        print(prefix + f"{s['rps']:>8.0f} {_fmt(s['p50_ms'], 3):>7} {_fmt(s['p99_ms']):>7} "
              f"{_fmt(s['p999_ms']):>7} {s['errors']:>5} {s['server_cpu_us_per_req']:>10.0f} "
              f"{s['loadgen_cpu_us_per_req']:>6.0f}  {o.status} {o.note}")


# A request slower than this is an outlier worth explaining.
OUTLIER_MS = 50.0


def print_tails(outcomes: list[Outcome]) -> None:
    """Rows whose slowest requests pass OUTLIER_MS, with what can explain them:
    GC pauses of the tiers (``--gc-log``) and the kernel's accept-queue drops
    and retransmissions (machine-wide) in the same window."""
    lines = []
    for o in outcomes:
        if o.result is None:
            continue
        s = o.summary()
        if s["max_ms"] < OUTLIER_MS:
            continue
        tcp = s.get("tcp") or {}
        gc = o.gc
        gc_text = (f"gc ≥1 ms: {gc['count']} (gen2 {gc['gen2']}), max {gc['max_ms']:.0f} ms"
                   if gc is not None else "gc: not logged (--gc-log)")
        lines.append(f"  {o.row.id:<26} p99 {s['p99_ms']:6.1f}  p99.9 {s['p999_ms']:6.1f}  "
                     f"max {s['max_ms']:6.0f} ms | {gc_text} | listen overflows "
                     f"{tcp.get('ListenOverflows', 0)}, SYN retrans {tcp.get('TCPSynRetrans', 0)}, "
                     f"retrans segs {tcp.get('RetransSegs', 0)}")
    if lines:
        print()
        print(f"tails over {OUTLIER_MS:.0f} ms, and what ran in the same window")
        print("\n".join(lines))


def print_criteria(found: list[Criterion]) -> None:
    titles = {"targets": "targets (issue #17), same run, same workload",
              "ratios": "other ratios (no target)",
              "warm": "warm path (secondary)"}
    for group, title in titles.items():
        part = [c for c in found if c.group == group]
        if part:
            print()
            print(title)
            for c in part:
                print(f"  {c.verdict:<6} {c.name:<60} {c.value}")


def print_facts(title: str, facts: dict[str, Any]) -> None:
    print()
    print(title)
    for key, value in facts.items():
        print(f"  {key:<44} {value}")


def write_results(results_dir: Path, stamp: str, document: dict[str, Any]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}.json"
    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path
