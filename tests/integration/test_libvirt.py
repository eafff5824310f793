"""``cloudseed libvirt sync|import|hook`` against the real libvirt (its test:// driver).

Domains and networks are defined through libvirt's test driver; the XML the
commands read is what libvirt itself prints (``virsh dumpxml``, the API's
``XMLDesc``). The hook runs as libvirtd runs it: a child process with
``DOMAIN OPERATION SUB-OPERATION EXTRA`` as argv and the domain XML on stdin.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.api import api_settings, http_request, running_api
from tests.support.configdrive_tools import extract_iso
from tests.support.control import RunningControl, running_control
from tests.support.libvirt_node import (
    DB_MAC,
    DB_UUID,
    DB_XML,
    NETWORK_UUID,
    NETWORK_XML,
    WEB_IP,
    WEB_IP6,
    WEB_MAC,
    WEB_MAC2,
    WEB_UUID,
    WEB_XML,
    domain_xml,
    nic,
    virsh,
    write_node,
)

from cloudseed.cli.main import main
from cloudseed.settings import ConfigDriveSettings, Secret, Settings
from cloudseed.store import SqlStore, open_store

SEED_KEY = "libvirt-test-seed-key-0123456789abcdef"


@pytest.fixture
def control(sqlite_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningControl]:
    settings = Settings(configdrive=ConfigDriveSettings(seed_key=Secret(SEED_KEY)))
    with open_store(sqlite_url) as store, running_control(store, settings=settings) as running:
        for name, value in _client_env(running, tmp_path).items():
            monkeypatch.setenv(name, value)
        yield running


def _client_env(running: RunningControl, tmp_path: Path) -> dict[str, str]:
    return {
        "CLOUDSEED_URL": running.url,
        "CLOUDSEED_TOKEN": running.token,
        "CLOUDSEED_STORE_DATA_DIR": str(tmp_path / "data"),
        "CLOUDSEED_LIBVIRT_NETWORK_DIR": str(tmp_path / "networks"),
    }


def _store(control: RunningControl) -> SqlStore:
    assert isinstance(control.store, SqlStore)
    return control.store


def test_sync_registers_every_domain_from_the_libvirt_api(
    control: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = write_node(tmp_path, WEB_XML, DB_XML)

    assert main(["libvirt", "sync", "--uri", uri, "-f", "json"]) == 0

    store = _store(control)
    web = store.get_server(WEB_UUID)
    assert web.name == "web1"
    (web_port,) = store.list_ports(server_id=WEB_UUID)
    assert web_port.mac_address == WEB_MAC
    assert sorted(ip.ip_address for ip in web_port.fixed_ips) == sorted([WEB_IP, WEB_IP6])
    network = store.get_network("default")
    assert (network.id, network.mtu) == (NETWORK_UUID, 1450)
    subnets = {s.cidr: s for s in store.list_subnets(NETWORK_UUID)}
    assert subnets["192.168.122.0/24"].gateway_ip == "192.168.122.1"
    assert "fd00:122::/64" in subnets
    # db1 has no DHCP host entry: no guessed address, and a warning with the fix.
    (db_port,) = store.list_ports(server_id=DB_UUID)
    assert db_port.mac_address == DB_MAC
    assert db_port.fixed_ips == ()
    err = capsys.readouterr().err
    assert f"virsh net-update default add ip-dhcp-host \"<host mac='{DB_MAC}'" in err
    # The direct-mode identification the flat libvirt mode relies on.
    assert store.server_id_by_ip(WEB_IP) == WEB_UUID


def test_sync_again_changes_nothing_and_keeps_what_the_operator_set(
    control: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = write_node(tmp_path, WEB_XML)
    assert main(["libvirt", "sync", "--uri", uri]) == 0
    reply = control.call("POST", f"/v1/servers/{WEB_UUID}/metadata", {"metadata": {"a": "b"}})
    assert reply.status == 200, reply.body
    revision = _store(control).revision()
    capsys.readouterr()

    assert main(["libvirt", "sync", "--uri", uri, "-f", "json"]) == 0

    assert '"changed": false' in capsys.readouterr().out
    assert _store(control).revision() == revision
    assert dict(_store(control).get_server(WEB_UUID).metadata) == {"a": "b"}


def test_sync_follows_a_renamed_domain_and_a_new_nic(
    control: RunningControl, tmp_path: Path
) -> None:
    assert main(["libvirt", "sync", "--uri", write_node(tmp_path, WEB_XML)]) == 0
    renamed = domain_xml("web1-renamed", WEB_UUID, nic(WEB_MAC), nic(WEB_MAC2))
    assert main(["libvirt", "sync", "--uri", write_node(tmp_path, renamed)]) == 0
    store = _store(control)
    assert store.get_server(WEB_UUID).name == "web1-renamed"
    ports = store.list_ports(server_id=WEB_UUID)
    assert [p.mac_address for p in ports] == [WEB_MAC, WEB_MAC2]
    # The host entry pins web1 by name for IPv6; the renamed domain loses that
    # pin but keeps its MAC-pinned IPv4 address.
    assert WEB_IP in {ip.ip_address for ip in ports[0].fixed_ips}


def test_sync_names_an_unreachable_libvirt(control: RunningControl, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.xml"
    assert main(["libvirt", "sync", "--uri", f"test://{missing}"]) == 1
    assert "cannot connect to libvirt at test://" in capsys.readouterr().err


def _run_hook(env: dict[str, str], stdin: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """As libvirtd runs a qemu hook: the installed script, argv, the domain XML on stdin."""
    root = Path(env["CLOUDSEED_STORE_DATA_DIR"]).parent / "root"
    script = root / "etc" / "libvirt" / "hooks" / "qemu.d" / "cloudseed"
    if not script.exists():
        assert main(["libvirt", "install-hook", "--root", str(root)]) == 0
    return subprocess.run(
        [str(script), *argv], input=stdin, capture_output=True, text=True, timeout=120,
        check=False, env={"PATH": os.environ.get("PATH", ""), **env},
    )


def test_install_hook_writes_an_executable_script_that_keeps_the_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cloudseed.toml"
    config.write_text("")
    assert main(["--config", str(config), "libvirt", "install-hook", "--root",
                 str(tmp_path)]) == 0
    script = tmp_path / "etc" / "libvirt" / "hooks" / "qemu.d" / "cloudseed"
    assert script.stat().st_mode & 0o777 == 0o755
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    command = shlex.join([sys.executable, "-m", "cloudseed", "--config", str(config.resolve())])
    assert f"exec {command} libvirt hook \"$@\"" in text
    assert str(script) in capsys.readouterr().out


def test_hook_registers_the_domain_libvirt_is_about_to_start(
    control: RunningControl, tmp_path: Path
) -> None:
    uri = write_node(tmp_path, WEB_XML)
    (tmp_path / "networks").mkdir()
    # The persistent network definition libvirt keeps in its network_dir.
    (tmp_path / "networks" / "default.xml").write_text(virsh(uri, "net-dumpxml", "default"))
    dumped = virsh(uri, "dumpxml", "web1")
    env = _client_env(control, tmp_path)

    result = _run_hook(env, dumped, "web1", "prepare", "begin", "-")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (port,) = _store(control).list_ports(server_id=WEB_UUID)
    assert (port.mac_address, port.fixed_ips[0].ip_address) == (WEB_MAC, WEB_IP)


def test_hook_ignores_operations_that_start_nothing(control: RunningControl,
                                                    tmp_path: Path) -> None:
    uri = write_node(tmp_path, WEB_XML)
    env = _client_env(control, tmp_path)
    for argv in (("stopped", "end", "-"), ("release", "end", "shutdown"),
                 ("started", "begin", "-")):
        result = _run_hook(env, virsh(uri, "dumpxml", "web1"), "web1", *argv)
        assert result.returncode == 0, result.stderr
    assert _store(control).list_servers() == []


def test_hook_failure_lets_the_guest_start_unless_told_otherwise(
    control: RunningControl, tmp_path: Path
) -> None:
    env = {**_client_env(control, tmp_path), "CLOUDSEED_URL": "http://127.0.0.1:9"}
    result = _run_hook(env, WEB_XML, "web1", "prepare", "begin", "-")
    assert result.returncode == 0
    assert "cloudseed libvirt hook: web1: cannot reach the control API" in result.stderr
    env["CLOUDSEED_LIBVIRT_HOOK_FAILURE_BLOCKS_START"] = "true"
    assert _run_hook(env, WEB_XML, "web1", "prepare", "begin", "-").returncode == 1
    # Settings that do not load cannot say "block": the guest starts, the error is shown.
    env["CLOUDSEED_LIBVIRT_HOOK_TIMEOUT_SECONDS"] = "soon"
    result = _run_hook(env, WEB_XML, "web1", "prepare", "begin", "-")
    assert result.returncode == 0
    assert "libvirt.hook_timeout_seconds" in result.stderr


def test_hook_refuses_xml_that_is_not_a_domain_naming_it(
    control: RunningControl, tmp_path: Path
) -> None:
    env = _client_env(control, tmp_path)
    result = _run_hook(env, NETWORK_XML, "web1", "prepare", "begin", "-")
    assert "expected a <domain> document" in result.stderr
    result = _run_hook(env, "<domain><name>x", "web1", "prepare", "begin", "-")
    assert "not well-formed XML" in result.stderr
    assert _store(control).list_servers() == []


def test_import_with_config_drive_writes_the_image_and_prints_the_disk(
    control: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = write_node(tmp_path, WEB_XML)
    domain_file = tmp_path / "web1.xml"
    domain_file.write_text(virsh(uri, "dumpxml", "web1"))
    network_file = tmp_path / "default.xml"
    network_file.write_text(virsh(uri, "net-dumpxml", "default"))

    assert main(["libvirt", "import", str(domain_file), "--network-xml", str(network_file),
                 "--config-drive"]) == 0

    image = tmp_path / "data" / "configdrive" / f"{WEB_UUID}.iso"
    out = capsys.readouterr().out
    assert f"<source file='{image}'/>" in out
    assert "<target dev='sdz' bus='sata'/>" in out
    tree = extract_iso(image, tmp_path / "iso")
    meta = (tree / "openstack" / "latest" / "meta_data.json").read_text()
    assert f'"uuid": "{WEB_UUID}"' in meta
    assert _store(control).get_server(WEB_UUID).config_drive is True


def test_import_of_a_domain_on_an_unknown_network_names_the_fix(
    control: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    domain_file = tmp_path / "web1.xml"
    domain_file.write_text(domain_xml("web1", WEB_UUID, nic(WEB_MAC, "isolated")))
    assert main(["libvirt", "import", str(domain_file)]) == 1
    err = capsys.readouterr().err
    assert "isolated" in err
    assert "cloudseed network create isolated" in err
    assert _store(control).list_servers() == []


DEFAULT_URI = "test:///default"
API_GUEST_UUID = "6a1f0c2e-9d3b-4e5f-8a7b-0c1d2e3f4a5b"
API_GUEST_MAC = "52:54:00:cc:00:01"
API_GUEST_IP = "192.168.122.77"


@pytest.fixture
def default_driver() -> Iterator[Any]:
    """libvirt's built-in test:///default host (shared by every connection in this
    process): a domain and a DHCP host entry defined through the API, removed after."""
    import libvirt  # a test dependency (pyproject [test])

    conn = libvirt.open(DEFAULT_URI)
    network = conn.networkLookupByName("default")
    host = f"<host mac='{API_GUEST_MAC}' ip='{API_GUEST_IP}'/>"
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    network.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                   libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host, flags)
    domain = conn.defineXML(domain_xml("api-guest", API_GUEST_UUID, nic(API_GUEST_MAC)))
    try:
        yield conn
    finally:
        domain.undefine()
        network.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                       libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, host, flags)
        conn.close()


def test_a_domain_defined_through_libvirt_is_served_its_metadata_after_sync(
    control: RunningControl, default_driver: Any
) -> None:
    assert main(["libvirt", "sync", "--uri", DEFAULT_URI]) == 0

    store = _store(control)
    # test:///default also holds libvirt's own sample domain "test".
    assert {s.name for s in store.list_servers()} >= {"api-guest", "test"}
    settings = api_settings(mode="direct", trusted_proxy_cidrs=("127.0.0.0/8",))
    with running_api(store, settings) as api:
        reply = http_request(api.port, "/openstack/latest/meta_data.json",
                             {"X-Forwarded-For": API_GUEST_IP})
        assert reply.status == 200, reply.body
        assert json.loads(reply.body)["uuid"] == API_GUEST_UUID
        reply = http_request(api.port, "/latest/meta-data/mac",
                             {"X-Forwarded-For": API_GUEST_IP})
        assert (reply.status, reply.body) == (200, API_GUEST_MAC.encode())
