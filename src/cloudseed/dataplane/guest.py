"""Act as a guest inside a plugged namespace: take a DHCP lease, fetch a URL.

IPv6: the kernel configures SLAAC addresses itself from the data plane's
router advertisements (``wait_for_addresses``); ``acquire_lease6`` runs
``dhclient -6`` for stateful DHCPv6.

Tests, ``doctor`` and ``cloudseed demo`` use these to see what a real guest
sees. The lease comes from ISC dhclient with Debian's own ``dhclient-script``
and its hooks (the rfc3442 hook installs option-121 routes), so the routes
are the ones a Debian guest would get. The script is copied with its
``/etc/resolv.conf`` pointed into the lease directory, so nothing a guest
learns is written to the host's /etc.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cloudseed.dataplane.plug import GUEST_INTERFACE
from cloudseed.dataplane.runner import CommandFailed, Runner

DHCLIENT_SCRIPT = Path("/sbin/dhclient-script")
# Long enough for a DISCOVER/OFFER/REQUEST/ACK with one retry on a busy host.
LEASE_TIMEOUT_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 5.0
DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        host-name, interface-mtu, rfc3442-classless-static-routes;
timeout 20;
initial-interval 1;
backoff-cutoff 2;
"""
_FETCH_SCRIPT = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode("utf-8", "replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode("utf-8", "replace")}))
except Exception as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


@dataclass(frozen=True, slots=True)
class Lease:
    addresses: tuple[str, ...]  # "ip/prefixlen" on the guest's interface
    routes: dict[str, str]  # destination ("default", "169.254.169.254") → gateway ("" on-link)
    log: str


def acquire_lease(
    netns: str, directory: Path, *, interface: str = GUEST_INTERFACE,
    runner: Runner | None = None,
) -> Lease:
    """Run dhclient once in ``netns``; it stays running (renewals) until ``release_lease``."""
    runner = runner or Runner()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    script = directory / "dhclient-script"
    script.write_text(DHCLIENT_SCRIPT.read_text().replace("/etc/resolv.conf",
                                                          str(directory / "resolv.conf")))
    script.chmod(0o755)
    try:
        result = runner.run(
            ["dhclient", "-1", "-v", "-cf", str(conf), "-sf", str(script),
             "-lf", str(directory / "leases"), "-pf", str(directory / "dhclient.pid"),
             interface],
            netns=netns, timeout=LEASE_TIMEOUT_SECONDS)
    except CommandFailed as exc:
        raise CommandFailed(exc.argv, exc.returncode,
                            f"no DHCP lease in {netns}: {exc.stderr[-1500:]}") from None
    addresses = tuple(
        f"{a['local']}/{a['prefixlen']}"
        for entry in runner.ip_json("addr", "show", interface, netns=netns)
        for a in entry.get("addr_info", []) if a.get("family") == "inet"
    )
    routes = {str(r.get("dst", "")): str(r.get("gateway", ""))
              for r in runner.ip_json("route", "show", netns=netns)}
    return Lease(addresses, routes, result.stderr)


def acquire_lease6(
    netns: str, directory: Path, *, interface: str = GUEST_INTERFACE,
    runner: Runner | None = None,
) -> tuple[str, ...]:
    """Run ``dhclient -6`` (stateful DHCPv6) once in ``netns``; return the global IPv6
    addresses on ``interface``. It stays running until ``release_lease(directory)``."""
    runner = runner or Runner()
    directory.mkdir(parents=True, exist_ok=True)
    # dhclient -6 binds the link-local address, which is unusable while DAD runs.
    wait_for_addresses(netns, "link", interface=interface, runner=runner)
    script = directory / "dhclient-script"
    script.write_text(DHCLIENT_SCRIPT.read_text().replace("/etc/resolv.conf",
                                                          str(directory / "resolv.conf")))
    script.chmod(0o755)
    conf = directory / "dhclient6.conf"
    conf.write_text("timeout 20;\ninitial-interval 1;\n")
    try:
        runner.run(["dhclient", "-6", "-1", "-v", "-cf", str(conf), "-sf", str(script),
                    "-lf", str(directory / "leases6"), "-pf", str(directory / "dhclient.pid"),
                    interface], netns=netns, timeout=LEASE_TIMEOUT_SECONDS)
    except CommandFailed as exc:
        raise CommandFailed(exc.argv, exc.returncode,
                            f"no DHCPv6 lease in {netns}: {exc.stderr[-1500:]}") from None
    return wait_for_addresses(netns, "global", interface=interface, runner=runner)


def wait_for_addresses(
    netns: str, scope: str, *, interface: str = GUEST_INTERFACE,
    timeout: float = LEASE_TIMEOUT_SECONDS, runner: Runner | None = None,
) -> tuple[str, ...]:
    """The usable (not tentative) IPv6 addresses of ``scope`` ("link" or "global") on
    ``interface``, once there is one: SLAAC from router advertisements lands here."""
    runner = runner or Runner()
    deadline = time.monotonic() + timeout
    while True:
        found = tuple(
            str(a["local"])
            for entry in runner.ip_json("-6", "addr", "show", "dev", interface, netns=netns)
            for a in entry.get("addr_info", [])
            if a.get("scope") == scope and not a.get("tentative")
        )
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def release_lease(directory: Path) -> None:
    """Stop the dhclient that ``acquire_lease`` left running (its namespace may be gone)."""
    pidfile = directory / "dhclient.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"dhclient" in cmdline and str(pidfile).encode() in cmdline:
        os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)


def fetch_in_netns(
    netns: str, url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS,
    runner: Runner | None = None,
) -> tuple[int, str]:
    """GET ``url`` from inside ``netns``: (status, body); status 0 when nothing answered."""
    runner = runner or Runner()
    result = runner.query([sys.executable, "-c", _FETCH_SCRIPT, url, str(timeout)], netns=netns)
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return 0, result.stderr.strip()[-500:]
    return int(answer["status"]), str(answer["body"])
