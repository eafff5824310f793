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

# Neutron's measured figure for its metadata agent (the baseline).
NEUTRON_AGENT_RPS = 478.0


@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    verdict: str  # pass | FAIL | noisy | n/a


def _get(outcomes: dict[str, Outcome], row_id: str) -> dict[str, Any] | str | None:
    """The row's figures; "noisy" or None (not run / unavailable) otherwise."""
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
    compute: Callable[..., tuple[str, bool]],
) -> Criterion:
    rows = [_get(outcomes, i) for i in ids]
    if any(r is None for r in rows):
        return Criterion(name, "-", "n/a")
    if any(r == "noisy" for r in rows):
        return Criterion(name, "-", "noisy")
    value, ok = compute(*rows)
    return Criterion(name, value, "pass" if ok else "FAIL")


def criteria(outcomes: dict[str, Outcome]) -> list[Criterion]:
    out: list[Criterion] = []
    for mode in ("close", "keepalive"):
        out.append(_check(
            f"api / raw httptools, {mode} ≥ 0.8", outcomes, [f"api.{mode}", f"ref.raw_tcp.{mode}"],
            lambda a, r: (f"{a['rps'] / r['rps']:.2f}", a["rps"] / r["rps"] >= 0.8)))
    for mode in ("close", "keepalive"):
        out.append(_check(
            f"built-in proxy / haproxy (Neutron), {mode} ≥ 0.8", outcomes,
            [f"proxy.builtin.{mode}", f"ref.haproxy_neutron.{mode}"],
            lambda p, h: (f"{p['rps'] / h['rps']:.2f}", p["rps"] / h["rps"] >= 0.8)))
    # haproxy reaches the agent with a new connection per request
    # (option http-server-close), so the close row is the comparable one.
    out.append(_check(
        f"agent / Neutron's {NEUTRON_AGENT_RPS:.0f} req/s, close ≥ 20×", outcomes,
        ["agent.close"],
        lambda a: (f"{a['rps'] / NEUTRON_AGENT_RPS:.1f}×", a["rps"] / NEUTRON_AGENT_RPS >= 20)))
    for mode in ("close", "keepalive"):
        out.append(_check(
            f"full chain, {mode}: ≥ 5000 req/s, p99 ≤ 20 ms, 0 errors", outcomes,
            [f"chain.builtin.{mode}"],
            lambda c: (f"{c['rps']:.0f} req/s, p99 {c['p99_ms']:.1f} ms, {c['errors']} err",
                       c["rps"] >= 5000 and c["p99_ms"] <= 20 and c["errors"] == 0)))
    for row_id, label in (("unloaded.api", "api"), ("unloaded.chain", "full chain")):
        out.append(_check(
            f"unloaded p50, {label} ≤ 0.5 ms", outcomes, [row_id],
            lambda u: (f"{u['p50_ms']:.3f} ms", u["p50_ms"] <= 0.5)))
    return out


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def print_table(outcomes: list[Outcome], show_noisy: bool) -> None:
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


def print_criteria(found: list[Criterion]) -> None:
    print()
    print("criteria")
    for c in found:
        print(f"  {c.verdict:<6} {c.name:<58} {c.value}")


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
