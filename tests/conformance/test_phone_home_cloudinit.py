"""Debian's real cloud-init ``phone_home`` module reports host keys to cloudseed.

The API runs in DIRECT mode on loopback (the guest's port holds 127.0.0.1),
as in test_api_cloudinit. The guest process reads its instance id and
hostname with cloud-init's own OpenStack reader, then runs
``cc_phone_home.handle`` unchanged: its URL templating (``$INSTANCE_ID``),
its form encoding and its HTTP client. Only where the host keys live is
guest configuration: the keys are made by the real ``ssh-keygen`` in a
temporary directory instead of /etc/ssh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.api import RunningApi, another_server, api_settings, running_api, store_view
from tests.support.control import running_control
from tests.support.guest import require_cloudinit, run_guest_python
from tests.support.samples import RICH

from cloudseed.cli.main import main
from cloudseed.store import SqlStore, open_store

pytestmark = pytest.mark.conformance

GUEST_IP = "127.0.0.1"

PHONE_HOME = """
import json, logging, sys
from cloudinit import helpers, util
from cloudinit.config import cc_phone_home
from cloudinit.sources import DataSourceHostname
from cloudinit.sources.helpers import openstack

base, url, keydir, cloud_dir, override = sys.argv[1:6]
meta = openstack.MetadataReader(base, timeout=5, retries=0).read_v2()["metadata"]

real_load = util.load_file
def load_file(path, *args, **kwargs):
    # The guest's host keys live in keydir, not /etc/ssh.
    if path.startswith("/etc/ssh/"):
        path = keydir + path[len("/etc/ssh"):]
    return real_load(path, *args, **kwargs)
util.load_file = load_file

class Cloud:
    paths = helpers.Paths({"cloud_dir": cloud_dir})
    def get_instance_id(self):
        return override or meta["uuid"]
    def get_hostname(self, fqdn=False, metadata_only=False):
        return DataSourceHostname(meta["hostname"], False)

cfg = {"phone_home": {"url": url, "post": "all", "tries": 1}}
cc_phone_home.handle("phone_home", cfg, Cloud(), logging.getLogger("phone_home"), [])
print(json.dumps({"instance_id": Cloud().get_instance_id()}))
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[RunningApi, SqlStore]]:
    require_cloudinit()
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store_view(store, RICH, guest_ip=GUEST_IP)
        with running_api(store, api_settings(mode="direct")) as running:
            yield running, store


def host_keys(tmp_path: Path) -> Path:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    keydir = tmp_path / "ssh"
    keydir.mkdir()
    for kind in ("ed25519", "ecdsa", "rsa"):
        subprocess.run(
            [keygen, "-q", "-t", kind, "-N", "", "-C", "root@guest",
             "-f", str(keydir / f"ssh_host_{kind}_key")],
            check=True,
        )
    return keydir


def phone_home(
    running: RunningApi, tmp_path: Path, path: str, *, instance_id: str = ""
) -> Path:
    keydir = host_keys(tmp_path)
    cloud_dir = tmp_path / "cloud"
    cloud_dir.mkdir()
    base = f"http://{GUEST_IP}:{running.port}"
    run_guest_python(PHONE_HOME, base, base + path, str(keydir), str(cloud_dir), instance_id)
    return keydir


def mismatches(running: RunningApi) -> float:
    """The refusal counter (absent from /metrics until first counted)."""
    name = "cloudseed_api_phone_home_mismatches_total "
    lines = running.request("/metrics", admin=True).body.decode().splitlines()
    return sum(float(line[len(name):]) for line in lines if line.startswith(name))


def key_of(keydir: Path, kind: str) -> str:
    return " ".join((keydir / f"ssh_host_{kind}_key.pub").read_text().split()[:2])


@pytest.mark.parametrize(
    "path", ["/openstack/latest/phone_home/$INSTANCE_ID", "/latest/phone_home"]
)
def test_cloudinit_phone_home_records_the_real_host_keys(
    api: tuple[RunningApi, SqlStore], tmp_path: Path, path: str
) -> None:
    running, store = api
    keydir = phone_home(running, tmp_path, path)
    report = store.get_phone_home(RICH.server.id)
    assert report is not None
    assert report.pub_key_ed25519 == key_of(keydir, "ed25519")
    assert report.pub_key_ecdsa == key_of(keydir, "ecdsa")
    assert report.pub_key_rsa == key_of(keydir, "rsa")
    assert report.hostname == json.loads(
        running.request("/openstack/latest/meta_data.json").body)["hostname"]
    assert report.booted_at
    # Write-once per boot: a second report is refused and changes nothing.
    again = running.request("/openstack/latest/phone_home", method="POST",
                            body=b"pub_key_ed25519=ssh-ed25519+AAAA")
    assert again.status == 409
    assert store.get_phone_home(RICH.server.id) == report
    # The operator clears it; the next boot reports again.
    with store.write() as writer:
        writer.clear_phone_home(RICH.server.id)
    assert store.get_phone_home(RICH.server.id) is None


def test_another_servers_instance_id_is_refused_and_nothing_stored(
    api: tuple[RunningApi, SqlStore], tmp_path: Path
) -> None:
    running, store = api
    other = another_server(store, 2, "127.0.90.2")
    assert mismatches(running) == 0
    # In the body (cloud-init's instance_id field) ...
    phone_home(running, tmp_path, "/openstack/latest/phone_home", instance_id=other.id)
    assert store.get_phone_home(RICH.server.id) is None
    assert store.get_phone_home(other.id) is None
    # ... and in the URL's $INSTANCE_ID segment.
    reply = running.request(f"/latest/phone_home/{other.id}", method="POST", body=b"")
    assert reply.status == 403
    assert store.get_phone_home(other.id) is None
    assert mismatches(running) == 2


def cli(capsys: pytest.CaptureFixture[str], *argv: str, expect: int = 0) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == expect, (argv, out, err)
    return out


def test_known_hosts_verifies_the_real_key_with_ssh_keygen(
    api: tuple[RunningApi, SqlStore],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, store = api
    name = RICH.server.name
    with running_control(store) as control:
        monkeypatch.setenv("CLOUDSEED_URL", control.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", control.token)
        monkeypatch.delenv("CLOUDSEED_CONFIG", raising=False)
        # Not booted yet: wait gives up with its own exit status, known-hosts is empty.
        cli(capsys, "server", "wait", name, "--booted", "--timeout", "0.3", expect=3)
        assert cli(capsys, "known-hosts") == ""
        keydir = phone_home(running, tmp_path, "/openstack/latest/phone_home/$INSTANCE_ID")
        cli(capsys, "server", "wait", name, "--booted", "--timeout", "30")
        shown = json.loads(cli(capsys, "server", "show", name, "-f", "json"))
        assert shown["phone_home"]["booted"] is True
        assert key_of(keydir, "ed25519") in shown["phone_home"]["host_keys"]
        printed = cli(capsys, "known-hosts", name)
        known = tmp_path / "known_hosts"
        known.write_text(printed)
        for host in (name, GUEST_IP):
            found = subprocess.run(
                ["ssh-keygen", "-F", host, "-f", str(known)],
                capture_output=True, text=True, check=False,
            )
            assert found.returncode == 0, (host, printed)
            assert key_of(keydir, "ed25519") in found.stdout
        # The operator clears the report; the server is no longer "booted".
        cli(capsys, "server", "phone-home", "clear", name)
        assert cli(capsys, "known-hosts") == ""
        assert store.get_phone_home(RICH.server.id) is None
