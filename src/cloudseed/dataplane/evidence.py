"""What the data plane can see of a guest it did not necessarily plug: for ``doctor``.

Two witnesses need no cooperation from the guest: the bridge's forwarding
database (the MAC the kernel *learned* on each bridge port, i.e. the MAC the
guest's NIC really sends from) and dnsmasq's own log (which files it could
read, and every DHCP exchange by MAC). Parsing is pure; reading is one
``bridge fdb`` call or one bounded file read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudseed.dataplane.runner import Runner

# The end of a long-running dnsmasq's log is what matters; never read more.
LOG_TAIL_BYTES = 1 << 20
_MAC = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
# "DHCPACK(ns-1a2b) 10.20.0.5 fa:16:3e:20:00:05 vm1", "DHCPDISCOVER(ns-1a2b) fa:…
# no address available" — dnsmasq's fixed wording for DHCPv4 transactions.
_DHCP_LINE = re.compile(
    rf"(DHCP[A-Z]+)\((\S+)\)\s+(?:(\d+\.\d+\.\d+\.\d+)\s+)?({_MAC})(?:\s+(.*))?$")


@dataclass(frozen=True, slots=True)
class DhcpEvent:
    message: str  # DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPACK, DHCPNAK, …
    ip: str  # "" when the line names none
    mac: str
    rest: str  # dnsmasq's trailing words: a hostname, "no address available", …


def read_log(path: str | Path) -> str | None:
    """The tail of dnsmasq's log, or None when it does not exist or cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def unreadable(log: str, paths: Iterable[str]) -> dict[str, str]:
    """path → dnsmasq's reason, for each file whose *latest* (re)read failed."""
    failed: dict[str, str] = {}
    for path in paths:
        last_ok = log.rfind(f" read {path}\n")
        marker = f" cannot read {path}: "
        last_bad = log.rfind(marker)
        if last_bad > last_ok:
            end = log.find("\n", last_bad)
            failed[path] = log[last_bad + len(marker):end if end >= 0 else None].strip()
    return failed


def dhcp_events(log: str) -> list[DhcpEvent]:
    events = []
    for line in log.splitlines():
        found = _DHCP_LINE.search(line)
        if found:
            message, _iface, ip, mac, rest = found.groups()
            events.append(DhcpEvent(message, ip or "", mac.lower(), (rest or "").strip()))
    return events


def last_reply(events: Iterable[DhcpEvent], mac: str) -> DhcpEvent | None:
    """dnsmasq's latest answer (ACK or NAK) to ``mac``."""
    replies = [e for e in events if e.mac == mac.lower() and e.message in {"DHCPACK", "DHCPNAK"}]
    return replies[-1] if replies else None


def refused_macs(events: Iterable[DhcpEvent]) -> list[str]:
    """MACs dnsmasq saw asking and could not serve (no port has them), latest last."""
    seen: dict[str, None] = {}
    for event in events:
        if "no address available" in event.rest or event.rest.startswith("ignored"):
            seen.pop(event.mac, None)
            seen[event.mac] = None
    return list(seen)


@dataclass(frozen=True, slots=True)
class Learned:
    port: str  # the bridge port the MAC was learned on
    age: int  # seconds since the bridge last saw a frame from it


def learned_macs(runner: Runner, root: str, bridge: str) -> dict[str, Learned]:
    """MAC → where and how recently the bridge learned it from traffic (not its own MACs)."""
    result = runner.query(["bridge", "-j", "-s", "fdb", "show", "br", bridge], netns=root)
    return parse_fdb(result.stdout) if result.returncode == 0 else {}


def parse_fdb(text: str) -> dict[str, Learned]:
    try:
        entries = json.loads(text or "[]")
    except ValueError:
        return {}
    learned: dict[str, Learned] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("state") == "permanent":
            continue
        if "self" in entry.get("flags", []) or not entry.get("master"):
            continue
        learned[str(entry.get("mac", "")).lower()] = Learned(
            str(entry.get("ifname", "")), int(entry.get("updated", 0)))
    return learned
