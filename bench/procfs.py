"""CPU and memory from /proc: what the processes under test spent, and what else ran.

A row is only worth reporting if the machine did nothing but the row while it
ran. ``/proc/stat`` gives the CPU time the whole machine spent; the processes
under test (every server process of the row and its descendants, plus the
load generator) account for part of it; the rest is foreign work: another
engineer's test suite, a cron job. IRQ and softirq time are left out of both
sides, because the loopback network's softirq work is charged to no process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class MachineCpu:
    busy_ticks: int  # user + nice + system + steal, every CPU
    softirq_ticks: int  # irq + softirq


def machine_cpu() -> MachineCpu:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return MachineCpu(user + nice + system + steal, irq + softirq)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields follow the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(roots: Iterable[int]) -> set[int]:
    """The roots and all their live descendants."""
    children = _children_map()
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def tree_ticks(roots: Iterable[int]) -> int:
    """CPU ticks (user + system) of the trees, including reaped children."""
    total = 0
    for pid in process_tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14-17 (1-based) of stat.
            total += sum(int(x) for x in fields[11:15])
    return total


def process_name(pid: int) -> str:
    """/proc/PID/comm (the ready map's renderer names itself), "" if gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree_rss_bytes(roots: Iterable[int]) -> int:
    return sum(rss_by_process(roots).values())


def rss_by_process(roots: Iterable[int], field: str = "VmRSS") -> dict[int, int]:
    """VmRSS of each root and each live descendant, by pid, in pid order (a
    worker's own figure: pages shared with its master count in both).

    ``field="RssAnon"``: only the process's private memory -- not the file
    pages it maps (the ready map's LMDB pages are the host's page cache, shared
    by every worker and dropped under memory pressure, yet count in VmRSS)."""
    out: dict[int, int] = {}
    for pid in sorted(process_tree(roots)):
        value = status_bytes(pid, field)
        if value is not None:
            out[pid] = value
    return out


def status_bytes(pid: int | str, field: str) -> int | None:
    """A memory field of /proc/PID/status (``VmRSS``, ``VmHWM``, ``RssAnon``) in
    bytes; None if the process is gone or has no such field. ``pid="self"``: this one."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def own_status_mib(field: str) -> float:
    """This process's ``field`` (``status_bytes``) in MiB."""
    value = status_bytes("self", field)
    if value is None:
        raise KeyError(field)
    return value / 2**20


def available_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# Kernel TCP counters that turn into latency outliers on loopback: a full
# accept queue drops the handshake's last ACK (ListenOverflows/ListenDrops),
# and the client's data then waits for a retransmission (≥ 200 ms RTO).
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPTimeouts", "TCPSynRetrans",
                "RetransSegs")


def tcp_counters() -> dict[str, int]:
    """The machine's TCP_COUNTERS now (/proc/net/netstat and /proc/net/snmp)."""
    found: dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        # Pairs of lines: "Prefix: names…" then "Prefix: values…".
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            for name, value in zip(names.split()[1:], values.split()[1:], strict=False):
                if name in TCP_COUNTERS:
                    found[name] = int(value)
    return found
