"""The real chain in namespaces: ``cloudseed api`` and ``cloudseed agent`` as processes,
guests plugged by the data plane, and what the privileged chain tests ask of them.

The ``chain`` fixture (tests/privileged/conftest.py) starts the API and agent
for a ``Lab``; ``build`` registers a routed and an isolated guest; ``boot``
plugs one and runs dhclient; ``own_metadata`` waits for a guest's own
meta_data.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cloudseed.model import Ipv6Mode
from tests.support.processes import stop_group

if TYPE_CHECKING:
    from tests.privileged.conftest import Lab

SECRET = "chain-test-secret"
META = "http://169.254.169.254/openstack/latest/meta_data.json"
META6 = "http://[fe80::a9fe:a9fe%eth0]/openstack/latest/meta_data.json"


@dataclass
class Chain:
    lab: Lab
    api_port: int
    agent_socket: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.lab.env(), "CLOUDSEED_SHARED_SECRET": SECRET}

    def start(self, name: str) -> None:
        argv = {
            "api": ["api", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers",
                    "1", "--mode", "proxy"],
            "agent": ["agent", "--socket", str(self.agent_socket), "--api-url",
                      f"http://127.0.0.1:{self.api_port}"],
        }[name]
        ready = (lambda: connects_tcp(self.api_port)) if name == "api" else (
            lambda: connects_unix(self.agent_socket))
        self._spawn(name, argv, self.env(), ready)

    def serve(self) -> None:
        """``cloudseed serve --tiers api,agent`` as the README runs it: no secret given."""
        self._spawn("serve", ["serve", "--tiers", "api,agent"], {**os.environ, **self.lab.env()},
                    lambda: connects_tcp(self.api_port) and connects_unix(self.agent_socket))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str],
               ready: Callable[[], bool]) -> None:
        log = open(self.lab.tmp / f"{name}.log", "ab")  # noqa: SIM115 - kept by the child
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "cloudseed.cli.main", *argv], env=env,
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        if not wait(ready, 30):
            raise AssertionError(f"{name} did not start:\n"
                                 + (self.lab.tmp / f"{name}.log").read_text()[-3000:])

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        stop_group(process)


def connects_tcp(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def connects_unix(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
    except OSError:
        return False
    return True


def wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def build(lab: Lab) -> dict[str, str]:
    router = lab.router("r1")
    routed = lab.network("routed", "10.20.0.0/24", "10.20.0.1", router=router)
    isolated = lab.network("isolated", "10.10.0.0/24", "10.10.0.1")
    return {
        "router": router, "isolated_net": isolated[0],
        "vm_routed": lab.server("vm-routed", routed, "10.20.0.5", "fa:16:3e:20:00:05"),
        "vm_isolated": lab.server("vm-isolated", isolated, "10.10.0.5", "fa:16:3e:10:00:05"),
    }


def boot(lab: Lab, server_id: str, name: str) -> str:
    lab.plug(server_id, name)
    guest = lab.guest_name(name)
    lab.dhcp(guest)
    return guest


def logs(lab: Lab) -> str:
    """The proxies', agent's and API's logs, for a failure message."""
    paths = sorted(Path(lab.settings().dataplane.state_dir, "proc").glob("*/log"))
    paths += [lab.tmp / "agent.log", lab.tmp / "api.log"]
    return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in paths if p.exists())


def own_metadata(lab: Lab, guest: str, url: str = META) -> dict[str, object]:
    if not wait(lambda: lab.fetch(guest, url)[0] == 200, 15):
        raise AssertionError(f"{lab.fetch(guest, url)}\n{logs(lab)}")
    status, body = lab.fetch(guest, url)
    assert status == 200, body
    data: dict[str, object] = json.loads(body)
    return data


# From inside a guest: every identity header naming the other tenant, one at a
# time, then CL+TE smuggling of a request that names it; prints every uuid seen.
SPOOF = """
import json, socket, sys, urllib.request
url, victim, victim_ip = sys.argv[1], sys.argv[2], sys.argv[3]
headers = [("X-Instance-ID", victim), ("X-Tenant-ID", "tenant-b"),
           ("X-Instance-ID-Signature", "0" * 64), ("X-Forwarded-For", victim_ip),
           ("Forwarded", "for=" + victim_ip), ("X-Neutron-Router-ID", victim),
           ("X-Neutron-Network-ID", victim), ("X_Instance_ID", victim)]
seen = []
for name, value in headers:
    request = urllib.request.Request(url, headers={name: value})
    with urllib.request.urlopen(request, timeout=10) as resp:
        seen.append(json.loads(resp.read())["uuid"])
smuggled = (b"GET /openstack/latest/meta_data.json HTTP/1.1\\r\\nHost: x\\r\\n"
            b"X-Instance-ID: " + victim.encode() + b"\\r\\n\\r\\n")
body = b"0\\r\\n\\r\\n" + smuggled
raw = (b"POST /openstack/latest/meta_data.json HTTP/1.1\\r\\nHost: x\\r\\n"
       b"Content-Length: " + str(len(body)).encode() + b"\\r\\n"
       b"Transfer-Encoding: chunked\\r\\n\\r\\n" + body)
with socket.create_connection(("169.254.169.254", 80), timeout=5) as sock:
    sock.sendall(raw)
    sock.settimeout(2)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
print(json.dumps({"seen": seen, "raw": answer.decode("latin-1")}))
"""


def in_guest(guest: str, script: str, *args: str, timeout: float = 60) -> dict[str, object]:
    out = subprocess.run(["ip", "netns", "exec", guest, sys.executable, "-c", script, *args],
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout)
    return result


@dataclass(frozen=True)
class Tenants:
    """Guests of different tenants on the same addresses (``overlapping_tenants``)."""

    v4: dict[str, str]  # "a", "b" (behind routers ra, rb), "c" (isolated) → server at 10.30.0.7
    v6: dict[str, str]  # "6r" (behind router r6), "6i" (isolated) → server at fd00:99::5
    networks: dict[str, str]  # the same names → network id


def overlapping_tenants(lab: Lab, *, v6: bool = True) -> Tenants:
    """Three tenants at 10.30.0.7 behind two routers and on an isolated network, and
    (``v6``) two at fd00:99::5 behind a router and on an isolated network (DHCPv6)."""
    nets = {"a": lab.network("a", "10.30.0.0/24", "10.30.0.1", router=lab.router("ra")),
            "b": lab.network("b", "10.30.0.0/24", "10.30.0.1", router=lab.router("rb")),
            "c": lab.network("c", "10.30.0.0/24", "10.30.0.1")}  # isolated: its DHCP namespace
    if v6:
        stateful = Ipv6Mode.DHCPV6_STATEFUL
        nets["6r"] = lab.network("r6", "fd00:99::/64", "fd00:99::1", router=lab.router("r6"),
                                 ipv6_mode=stateful)
        nets["6i"] = lab.network("i6", "fd00:99::/64", "fd00:99::1", ipv6_mode=stateful)
    servers = {name: lab.server(f"vm-{name}", net, "fd00:99::5" if name.startswith("6")
                                else "10.30.0.7", f"fa:16:3e:30:00:{i:02x}",
                                project=f"tenant-{name}")
               for i, (name, net) in enumerate(nets.items())}
    return Tenants({k: v for k, v in servers.items() if not k.startswith("6")},
                   {k: v for k, v in servers.items() if k.startswith("6")},
                   {name: net[0] for name, net in nets.items()})


def read_their_own(lab: Lab, tenants: Tenants) -> None:
    """Boot every tenant's guest (DHCP, DHCPv6) and check each reads its own meta_data.json."""
    for name, server in tenants.v4.items():
        assert own_metadata(lab, boot(lab, server, name))["uuid"] == server
    for name, server in tenants.v6.items():
        lab.plug(server, name)
        guest = lab.guest_name(name)
        assert lab.dhcp6(guest) == ("fd00:99::5",)
        assert own_metadata(lab, guest, META6)["uuid"] == server


def spoofing_gets_only_their_own(lab: Lab, tenants: Tenants) -> None:
    """From inside the guests of a (router) and c (isolated): every identity header naming
    another tenant's server, router or network, and CL+TE smuggling, get only their own."""
    routers = {r.name: r.id for r in lab.store.list_routers()}
    v4 = tenants.v4
    for name, victim in (("a", v4["b"]), ("c", v4["a"])):
        server = v4[name]
        guest = boot(lab, server, name)
        own_metadata(lab, guest)
        for victim_id in (victim, routers["rb"], tenants.networks["b"]):
            result = in_guest(guest, SPOOF, META, victim_id, "10.30.0.7")
            assert result["seen"] == [server] * 8, result
            raw = str(result["raw"])
            # The front refuses CL+TE outright (400, then close): nothing smuggled.
            assert raw.startswith("HTTP/1.1 400"), raw[:200]
            assert victim_id not in raw
            assert v4["b"] not in raw


STORM = """
import json, sys, time, urllib.error, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
ok, failed = 0, {}
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            ok += 1
    except urllib.error.HTTPError as exc:
        failed[str(exc.code)] = failed.get(str(exc.code), 0) + 1
    except OSError as exc:
        failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
    time.sleep(0.125)  # under the agent's per-guest rate limit (10/s)
print(json.dumps({"ok": ok, "failed": failed}))
"""




@contextlib.contextmanager
def guests_under_load(guests: list[str], seconds: float) -> Iterator[list[dict[str, object]]]:
    """Each guest reads its own metadata in a loop (``STORM``) while the block runs.

    Yields the list the outcomes land in after the block; every guest must have
    been answered at least once and never refused or failed.
    """
    storms = [subprocess.Popen(["ip", "netns", "exec", guest, sys.executable, "-c", STORM, META,
                                str(seconds)], stdout=subprocess.PIPE, text=True)
              for guest in guests]
    time.sleep(1)
    outcomes: list[dict[str, object]] = []
    yield outcomes
    outcomes.extend(json.loads(storm.communicate(timeout=60)[0]) for storm in storms)
    for outcome in outcomes:
        assert outcome["ok"], outcomes
        assert outcome["failed"] == {}, outcomes
