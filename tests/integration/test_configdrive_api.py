"""``GET /v1/servers/{id}/configdrive`` and ``cloudseed configdrive build``, over real HTTP.

The images are checked by the tools a hypervisor's guest would meet: xorriso
and isoinfo read the ISO volumes, fsck.fat and mtools the vfat one.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.configdrive_tools import (
    extract_iso,
    extract_vfat,
    read_tree,
    require_tools,
    run,
    write_image,
)
from tests.support.control import RunningControl, running_control

from cloudseed.cli.main import main
from cloudseed.configdrive.config import check_drive_settings
from cloudseed.configdrive.keeper import DriveKeeper
from cloudseed.settings import ConfigDriveSettings, Secret, Settings
from cloudseed.store import SqlStore

SEED_KEY = "configdrive-seed-key-for-tests-0123456789"
USER_DATA = b"#cloud-config\nruncmd:\n  - [touch, /run/configdrive-test]\n"
VFAT_IMAGE_BYTES = 64 * 1024 * 1024


def control_with_seed_key(store: SqlStore) -> AbstractContextManager[RunningControl]:
    """The control API with a config drive seed key (the shared harness has none)."""
    return running_control(
        store, settings=Settings(configdrive=ConfigDriveSettings(seed_key=Secret(SEED_KEY)))
    )


@pytest.fixture
def api(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningControl]:
    with control_with_seed_key(store) as running:
        monkeypatch.setenv("CLOUDSEED_URL", running.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", running.token)
        monkeypatch.delenv("CLOUDSEED_CONFIG", raising=False)
        _create_server(running)
        yield running


def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status == status, (reply.status, reply.body[:500])
    return reply.json() if reply.body else None


def _create_server(api: RunningControl, name: str = "web1") -> dict[str, Any]:
    if api.call("GET", "/v1/networks/net1").status == 404:
        _ok(api.call("POST", "/v1/networks", {"name": "net1", "subnets": [
            {"cidr": "10.0.0.0/24"}]}), 201)  # fmt: skip
    body = {
        "name": name,
        "user_data": base64.b64encode(USER_DATA).decode(),
        "metadata": {"role": "web"},
        "config_drive": True,
        "networks": [{"network": "net1"}],
    }
    server: dict[str, Any] = _ok(api.call("POST", "/v1/servers", body), 201)
    return server


def _drive(api: RunningControl, query: str = "") -> bytes:
    reply = api.call("GET", f"/v1/servers/web1/configdrive{query}")
    assert reply.status == 200, reply.body[:500]
    assert reply.headers["Content-Type"] == "application/octet-stream"
    return reply.body


def _error(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body[:500])
    body: dict[str, Any] = reply.json()
    return body


# -- the endpoint ---------------------------------------------------------------


def test_iso_drive_is_a_config_2_volume_with_the_servers_files(
    api: RunningControl, tmp_path: Path
) -> None:
    require_tools("xorriso")
    reply = api.call("GET", "/v1/servers/web1/configdrive?format=iso9660")
    assert reply.status == 200
    assert reply.headers["Content-Disposition"] == 'attachment; filename="web1-config-2.iso"'
    image = write_image(tmp_path, "web1.iso", reply.body)
    assert "Volume Id    : config-2" in run("xorriso", "-indev", str(image), "-pvd_info")
    files = read_tree(extract_iso(image, tmp_path / "out"))
    meta = json.loads(files["openstack/latest/meta_data.json"])
    server = _ok(api.call("GET", "/v1/servers/web1"))
    assert (meta["uuid"], meta["name"], meta["meta"]) == (server["id"], "web1", {"role": "web"})
    assert len(base64.b64decode(meta["random_seed"])) == 512
    assert files["openstack/latest/user_data"] == USER_DATA


def test_iso9660_is_the_default_format(api: RunningControl) -> None:
    assert _drive(api) == _drive(api, "?format=iso9660")


def test_vfat_drive_of_64_mib_passes_fsck(api: RunningControl, tmp_path: Path) -> None:
    require_tools("fsck.fat", "mlabel", "mcopy")
    reply = api.call("GET", "/v1/servers/web1/configdrive?format=vfat")
    assert reply.status == 200
    assert len(reply.body) == VFAT_IMAGE_BYTES
    assert reply.headers["Content-Disposition"] == 'attachment; filename="web1-config-2.img"'
    image = write_image(tmp_path, "web1.img", reply.body)
    run("fsck.fat", "-n", str(image))
    assert "config-2" in run("mlabel", "-i", str(image), "-s", "::")
    files = read_tree(extract_vfat(image, tmp_path / "out"))
    assert files["openstack/latest/user_data"] == USER_DATA


def test_nocloud_seed_is_labelled_cidata(api: RunningControl, tmp_path: Path) -> None:
    require_tools("isoinfo", "xorriso")
    reply = api.call("GET", "/v1/servers/web1/configdrive?format=nocloud")
    assert reply.status == 200
    assert reply.headers["Content-Disposition"] == 'attachment; filename="web1-cidata.iso"'
    image = write_image(tmp_path, "seed.iso", reply.body)
    assert "Volume id: cidata" in run("isoinfo", "-d", "-i", str(image))
    files = read_tree(extract_iso(image, tmp_path / "out"))
    assert files["user-data"] == USER_DATA
    assert "instance-id:" in files["meta-data"].decode()


def test_drive_bytes_do_not_change_when_other_data_changes(api: RunningControl) -> None:
    before = _drive(api)
    revision = api.store.revision()
    _create_server(api, "web2")
    _ok(api.call("PUT", "/v1/servers/web2/metadata/role", {"meta": {"role": "db"}}))
    assert api.store.revision() > revision
    assert _drive(api) == before


def test_drive_bytes_change_when_the_servers_data_changes(api: RunningControl) -> None:
    before = _drive(api)
    _ok(api.call("PUT", "/v1/servers/web1/metadata/role", {"meta": {"role": "db"}}))
    assert _drive(api) != before


def test_bad_format_is_a_400_naming_the_allowed_values(api: RunningControl) -> None:
    body = _error(api.call("GET", "/v1/servers/web1/configdrive?format=udf"), 400)
    assert body["field"] == "format"
    assert "iso9660, vfat, nocloud" in body["message"]


def test_unknown_server_is_a_404(api: RunningControl) -> None:
    body = _error(api.call("GET", "/v1/servers/nope/configdrive"), 404)
    assert body["kind"] == "server"


def test_drive_needs_a_token_like_every_v1_route(api: RunningControl) -> None:
    assert api.call("GET", "/v1/servers/web1/configdrive", token=None).status == 401
    assert api.call("GET", "/v1/servers/web1/configdrive", token="wrong").status == 403


def test_content_over_the_drive_capacity_is_the_limit_error(
    api: RunningControl, store: SqlStore
) -> None:
    # The control API caps user-data far below a drive's size, so the oversized
    # server is written to the store directly, as an import from elsewhere could.
    server = store.get_server("web1")
    with store.write() as writer:
        writer.put_server(dataclasses.replace(server, user_data=b"\0" * (6 * 1024 * 1024)))
    body = _error(api.call("GET", "/v1/servers/web1/configdrive?format=iso9660"), 400)
    assert (body["error"], body["field"]) == ("LimitExceeded", "configdrive")
    assert body["limit"]


def test_without_a_seed_key_the_endpoint_names_the_setting(store: SqlStore) -> None:
    with running_control(store) as bare:  # the shared harness configures no seed key
        _create_server(bare)
        body = _error(bare.call("GET", "/v1/servers/web1/configdrive"), 500)
        assert body["error"] == "ConfigError"
        assert "configdrive.seed_key" in body["message"]
        assert _ok(bare.call("GET", "/v1/servers/web1"))["name"] == "web1"  # the rest works


def test_openapi_documents_the_drive_route(api: RunningControl) -> None:
    document = _ok(api.call("GET", "/v1/openapi.json", token=None))
    operation = document["paths"]["/v1/servers/{server}/configdrive"]["get"]
    assert "application/octet-stream" in operation["responses"]["200"]["content"]
    (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["iso9660", "vfat", "nocloud"]
    assert operation["security"] == [{"bearer": []}]


# -- the CLI --------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, expect: int = 0) -> tuple[str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == expect, (argv, out, err)
    return out, err


def test_cli_build_writes_the_image_and_says_so(
    api: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "web1.iso"
    target.write_bytes(b"an older image")
    out, _ = _cli(capsys, "configdrive", "build", "web1", "-o", str(target))
    assert target.read_bytes() == _drive(api)
    assert out.count("\n") == 1
    assert str(target) in out
    assert f"{target.stat().st_size} bytes" in out
    assert "iso9660" in out
    assert [p.name for p in target.parent.iterdir()] == ["web1.iso"]  # no temporary left


@pytest.mark.parametrize("fmt", ["vfat", "nocloud"])
def test_cli_build_in_another_format(
    api: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    target = tmp_path / "drive"
    out, _ = _cli(capsys, "configdrive", "build", "web1", "-o", str(target), "--format", fmt)
    assert target.read_bytes() == _drive(api, f"?format={fmt}")
    assert fmt in out


def test_cli_build_of_an_unknown_server_fails_with_one_line(
    api: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "x.iso"
    _, err = _cli(capsys, "configdrive", "build", "nope", "-o", str(target), expect=1)
    assert err.startswith("cloudseed: 404:")
    assert err.count("\n") == 1
    assert not target.exists()


def test_cli_build_refuses_an_unknown_format(
    api: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["configdrive", "build", "web1", "-o", str(tmp_path / "x"), "--format", "udf"])
    assert exit_.value.code == 2
    assert "iso9660" in capsys.readouterr().err


def test_cli_build_into_a_missing_directory_says_which_file(
    api: RunningControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "web1.iso"
    _, err = _cli(capsys, "configdrive", "build", "web1", "-o", str(target), expect=1)
    assert str(target) in err


def test_cli_build_reports_a_missing_seed_key(
    store: SqlStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_control(store) as bare:
        _create_server(bare)
        monkeypatch.setenv("CLOUDSEED_URL", bare.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", bare.token)
        _, err = _cli(
            capsys, "configdrive", "build", "web1", "-o", str(tmp_path / "x.iso"), expect=1
        )
    assert "configdrive.seed_key" in err


def test_cli_build_to_stdout_keeps_the_summary_on_stderr(
    api: RunningControl, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["configdrive", "build", "web1", "-o", "-"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == _drive(api)
    assert err.startswith(b"wrote stdout: ")


def test_endpoint_and_keeper_give_the_same_image(
    api: RunningControl, store: SqlStore, tmp_path: Path
) -> None:
    settings = Settings(configdrive=ConfigDriveSettings(seed_key=Secret(SEED_KEY)))
    config = check_drive_settings(settings)
    options = config.render_options(datetime.now(UTC).date())
    keeper = DriveKeeper(store, tmp_path / "drives", options, config.seed_key, "iso9660")
    keeper.sync()
    server_id = _ok(api.call("GET", "/v1/servers/web1"))["id"]
    assert keeper.path_for(server_id).read_bytes() == _drive(api)
