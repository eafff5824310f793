"""No secret in any log line, environment or command line of a whole running stack.

``cloudseed serve`` runs as a real process on a real data dir and a real
PostgreSQL store whose URL carries a password (given the way an operator
should: ``store.url_file``). A guest on a loopback address crawls through the
chain serve starts (proxy → agent → API), takes an IMDSv2 token and posts its
password; a second ``serve`` and a ``db current`` fail to reach a PostgreSQL
that is not there, with another password in their URL. Then every log line,
and ``/proc/<pid>/environ`` and ``cmdline`` of every process the stack
started, is searched for every secret: the shared secret, the token key, the
control token, the config drive seed key, both PostgreSQL passwords, the
token and the signature the guest's requests carried, and the guest's
user-data and password (raw and base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from tests.support.cli import cloudseed_argv
from tests.support.netns import sweep_namespaces
from tests.support.ports import free_port
from tests.support.processes import stop_group

from cloudseed.dataplane.guest import acquire_lease, fetch_in_netns, release_lease
from cloudseed.dataplane.runner import Runner
from cloudseed.store import open_store

pytestmark = pytest.mark.slow

NETWORK_ID = "net-scan"
GUEST_IP = "127.0.77.10"
PG_PASSWORD = "pg-pass-Zq81vXk2"
PG_PASSWORD_UNREACHABLE = "pg-pass-Unreach-5Tw9"
USER_DATA = b"#cloud-config\n# user-data-marker-Hb27Lq\n"
GUEST_PASSWORD = b"guest-password-Kd83Nm0"


def wait_for(check: Callable[[], bool], what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen:\n{log.read_text()[-4000:]}")


def connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSEED_", "PG"))}


def write_config(
    path: Path, data_dir: Path, url: str, ports: dict[str, int], extra: str = ""
) -> Path:
    url_file = path.with_suffix(".url")
    url_file.write_text(url + "\n")
    url_file.chmod(0o600)
    path.write_text(f"""
[store]
data_dir = "{data_dir}"
url_file = "{url_file}"
[control]
host = "127.0.0.1"
port = {ports["control"]}
[api]
host = "127.0.0.1"
port = {ports["api"]}
# Worker N's admin listener is admin_port + N: off, so no port can collide.
admin_host = ""
workers = 2
[agent]
socket_path = "{data_dir}/run/agent.sock"
api_url = "http://127.0.0.1:{ports["api"]}"
metrics_port = {ports["metrics"]}
[configdrive]
directory = "{data_dir}/drives"
{extra}
""")
    return path


@dataclass
class Stack:
    config: Path
    data_dir: Path
    log: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    url: str
    seen: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)

    def secret(self, name: str) -> str:
        return (self.data_dir / "secrets" / name).read_text().strip()

    def token_key(self) -> str:
        """The IMDSv2 token key: unset in serve's settings, so the store's."""
        with open_store(self.url) as store:
            return store.token_key().decode()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["control"], timeout=30)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={
            "Authorization": f"Bearer {self.secret('control_token')}",
            "Content-Type": "application/json"})
        reply = conn.getresponse()
        payload = reply.read()
        conn.close()
        assert reply.status < 300, (path, reply.status, payload)
        return json.loads(payload) if payload else None

    def guest(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["proxy"], timeout=30,
                                          source_address=(GUEST_IP, 0))
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        payload = reply.read()
        conn.close()
        return reply.status, payload

    def record_processes(self, others: Sequence[int] = ()) -> None:
        """environ and cmdline of serve, every process under it and ``others``, as now."""
        for pid in [self.process.pid, *descendants(self.process.pid), *others]:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # it exited meanwhile
            self.seen[pid] = (environ, cmdline)


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.fixture
def dataplane_settings() -> str:
    """Extra TOML for the stack's config (the data-plane test overrides it)."""
    return ""


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str, dataplane_settings: str) -> Iterator[Stack]:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("control", "api", "metrics", "proxy")}
    url = make_url(postgres_url).set(password=PG_PASSWORD).render_as_string(hide_password=False)
    config = write_config(tmp_path / "cloudseed.toml", data_dir, url, ports, dataplane_settings)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cloudseed_argv(), "--config", str(config), "serve",
             "--proxy", f"{NETWORK_ID}=127.0.0.1:{ports['proxy']}"],
            stdout=out, stderr=out, env=clean_environment(), start_new_session=True)
    stack = Stack(config, data_dir, log, ports, process, url)
    try:
        for name in ("control", "api", "proxy"):
            wait_for(lambda name=name: connects(ports[name]), f"{name} listening", log)  # type: ignore[misc]
        yield stack
    finally:
        stop_group(process, 30)


def crawl(stack: Stack) -> dict[str, str]:
    """What a booting guest does; returns the token and the signature it used."""
    stack.control("POST", "/v1/networks", {"id": NETWORK_ID, "name": "scan-net",
                                           "subnets": [{"cidr": "127.0.77.0/24"}]})
    server = stack.control("POST", "/v1/servers", {
        "name": "vm1", "networks": [{"network": NETWORK_ID, "fixed_ip": GUEST_IP}],
        "user_data": base64.b64encode(USER_DATA).decode()})
    meta = "/openstack/latest/meta_data.json"
    wait_for(lambda: stack.guest("GET", meta)[0] == 200, "the guest's first answer", stack.log)
    for path in ("/openstack", meta, "/openstack/latest/network_data.json",
                 "/openstack/latest/vendor_data2.json", "/latest/meta-data/",
                 "/latest/meta-data/instance-id", "/2009-04-04/meta-data/local-ipv4"):
        assert stack.guest("GET", path)[0] == 200, path
    assert stack.guest("GET", "/openstack/latest/user_data") == (200, USER_DATA)
    assert stack.guest("GET", "/latest/user-data") == (200, USER_DATA)
    status, token = stack.guest("PUT", "/latest/api/token",
                                headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    assert status == 200
    assert stack.guest("GET", "/latest/meta-data/hostname",
                       headers={"X-aws-ec2-metadata-token": token.decode()})[0] == 200
    status, _ = stack.guest("POST", "/openstack/latest/password", body=GUEST_PASSWORD)
    assert status == 200
    assert stack.guest("GET", "/openstack/latest/password") == (200, GUEST_PASSWORD)
    shown = stack.control("GET", f"/v1/servers/{server['id']}/password")
    assert shown["password"] == GUEST_PASSWORD.decode()
    signature = hmac.new(stack.secret("shared_secret").encode(), server["id"].encode(),
                         hashlib.sha256).hexdigest()
    return {"imds token": token.decode(), "instance signature": signature}


def fail_to_reach_postgres(tmp_path: Path) -> list[Path]:
    """serve and db current against a PostgreSQL that is not listening; their logs."""
    url = f"postgresql://cloudseed:{PG_PASSWORD_UNREACHABLE}@127.0.0.1:{free_port()}/nowhere"
    ports = {name: free_port() for name in ("control", "api", "metrics")}
    config = write_config(tmp_path / "unreachable.toml", tmp_path / "data2", url, ports)
    logs = []
    for argv in (["serve"], ["db", "current"]):
        done = subprocess.run([*cloudseed_argv(), "--config", str(config), *argv],
                              capture_output=True, env=clean_environment(), timeout=120,
                              check=False)
        assert done.returncode == 1, done
        # One line naming the store (password masked) and the fix, no traceback.
        assert b"Traceback" not in done.stderr
        assert b"cannot reach the store at postgresql+psycopg://cloudseed:***@127.0.0.1:" \
            in done.stderr, done.stderr
        assert b"check store.url" in done.stderr
        log = tmp_path / f"unreachable-{argv[0]}.log"
        log.write_bytes(done.stdout + done.stderr)
        logs.append(log)
    return logs


def secrets_of(stack: Stack, used: dict[str, str]) -> dict[str, str]:
    return {
        "shared secret": stack.secret("shared_secret"),
        "token key": stack.token_key(),
        "control token": stack.secret("control_token"),
        "config drive seed key": stack.secret("configdrive_seed_key"),
        "PostgreSQL password": PG_PASSWORD,
        "unreachable PostgreSQL password": PG_PASSWORD_UNREACHABLE,
        "user-data": USER_DATA.decode().strip().splitlines()[-1],
        "user-data (base64)": base64.b64encode(USER_DATA).decode(),
        "guest password": GUEST_PASSWORD.decode(),
        "guest password (base64)": base64.b64encode(GUEST_PASSWORD).decode(),
        **used,
    }


def leaks(stack: Stack, logs: Sequence[Path], secrets: dict[str, str]) -> list[str]:
    """Every (secret, place) where a secret value shows."""
    found = []
    for log in logs:
        content = log.read_bytes()
        found += [f"{name} in {log}" for name, value in secrets.items()
                  if value.encode() in content]
    for pid, (environ, cmdline) in stack.seen.items():
        command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
        for name, value in secrets.items():
            if value.encode() in environ:
                found.append(f"{name} in the environment of {pid} ({command})")
            if value.encode() in cmdline:
                found.append(f"{name} on the command line of {pid} ({command})")
    return found


def test_no_secret_in_any_log_environment_or_command_line(
    stack: Stack, tmp_path: Path
) -> None:
    used = crawl(stack)
    stack.record_processes()
    logs = [stack.log, *fail_to_reach_postgres(tmp_path)]
    logs += [p for p in stack.data_dir.rglob("*.log") if p.is_file()]
    time.sleep(1.5)  # the API's access log is flushed in batches
    stack.record_processes()
    # The scan must have had something to look at: a log of the crawl, every tier.
    text = stack.log.read_text()
    assert "/openstack/latest/user_data" in text, text[-3000:]
    assert len(stack.seen) >= 7, stack.seen.keys()  # serve, 4 tiers, api workers, proxy
    assert leaks(stack, logs, secrets_of(stack, used)) == []


def test_data_dir_and_store_files_are_private(stack: Stack) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(stack.data_dir) == 0o700
    assert mode(stack.data_dir / "secrets") == 0o700
    for path in (stack.data_dir / "secrets").rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


# -- the data plane too, when we may build namespaces -----------------------------------

DP_ROOT = f"cs{uuid.uuid4().hex[:6]}"
DP_STATE = Path("/run/cloudseed-test") / DP_ROOT  # dnsmasq reads as nobody: not under tmp
DP_GUEST = f"{DP_ROOT}-g-vm"
DP_GUEST_IP = "10.77.0.5"


def data_plane_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: namespaces, bridges, nftables, dnsmasq"
    missing = [t for t in ("ip", "nft", "dnsmasq", "dhclient") if shutil.which(t) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


def remove_data_plane(stack: Stack) -> None:
    run_cli(stack, "dataplane", "teardown")
    sweep_namespaces(DP_ROOT)
    shutil.rmtree(DP_STATE, ignore_errors=True)


def run_cli(
    stack: Stack, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*cloudseed_argv(), "--config", str(stack.config), *argv],
                          capture_output=True, env={**clean_environment(), **(env or {})},
                          timeout=180, check=False)


@pytest.mark.privileged
@pytest.mark.parametrize("dataplane_settings", [f"""
[dataplane]
root_netns = "{DP_ROOT}"
state_dir = "{DP_STATE}"
stop_grace_seconds = 2.0
"""])
def test_no_secret_in_the_data_plane_either(stack: Stack, tmp_path: Path) -> None:
    reason = data_plane_skip_reason()
    if reason:
        pytest.skip(reason)
    used = crawl(stack)
    stack.control("POST", "/v1/networks", {"name": "dp-net",
                                           "subnets": [{"cidr": "10.77.0.0/24"}]})
    stack.control("POST", "/v1/servers", {
        "name": "dpvm", "networks": [{"network": "dp-net", "fixed_ip": DP_GUEST_IP}],
        "user_data": base64.b64encode(USER_DATA).decode()})
    lease_dir = tmp_path / "lease"
    try:
        # As an operator might: the URL, password and all, exported for the sync. The
        # sync exits; the proxies and dnsmasq it leaves running must not inherit it.
        done = run_cli(stack, "dataplane", "sync", env={"CLOUDSEED_STORE_URL": stack.url})
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        done = run_cli(stack, "dataplane", "plug", "dpvm", "--netns", DP_GUEST)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        lease = acquire_lease(DP_GUEST, lease_dir)
        assert f"{DP_GUEST_IP}/24" in lease.addresses, lease
        url = "http://169.254.169.254/openstack/latest/user_data"
        wait_for(lambda: fetch_in_netns(DP_GUEST, url)[0] == 200, "the namespaced guest's answer",
                 stack.log)
        assert fetch_in_netns(DP_GUEST, url) == (200, USER_DATA.decode())
        runner = Runner()
        plane = [pid for name in runner.namespaces() if name.startswith(DP_ROOT)
                 for pid in runner.namespace_pids(name)]
        time.sleep(1.5)  # access logs are flushed in batches
        stack.record_processes(plane)
        assert len(stack.seen) >= 9, stack.seen.keys()  # the stack, dnsmasq, a proxy, dhclient
        logs = [stack.log, *(p for p in DP_STATE.rglob("*") if p.is_file() and "log" in p.name)]
        assert any("log" in p.name for p in logs[1:]), list(DP_STATE.rglob("*"))
        assert leaks(stack, logs, secrets_of(stack, used)) == []
    finally:
        release_lease(lease_dir)
        remove_data_plane(stack)
