"""`cloudseed install-units` writes the shipped units, and systemd accepts every one.

``systemd-analyze verify`` needs no running systemd: it loads a unit as PID 1
would, checks every key, and checks that ExecStart's program exists (so the
units are verified as installed for this venv's ``cloudseed``). It only warns
about an unknown key, so the test also demands silence.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.units import dataplane_capabilities, unit_settings

from cloudseed.cli.main import main
from cloudseed.dataplane.desired import default_cloudseed_command
from cloudseed.settings import Settings
from cloudseed.systemd import unit_names

USER_TIERS = ("cloudseed.service", "cloudseed-control.service", "cloudseed-api.service",
              "cloudseed-agent.service")


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], cwd=unit.parent,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["install-units", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / "etc" / "systemd" / "system"


def test_install_units_writes_every_tier_and_the_user(installed: Path) -> None:
    assert unit_names() == (*sorted([*USER_TIERS, "cloudseed-dataplane.service",
                                     "cloudseed-control.socket", "cloudseed-agent.socket"]),)
    assert sorted(p.name for p in installed.iterdir()) == list(unit_names())
    sysusers = installed.parents[1] / "sysusers.d" / "cloudseed.conf"
    assert sysusers.read_text().splitlines()[-1].startswith("u cloudseed ")


@pytest.mark.parametrize("name", unit_names())
def test_every_unit_verifies_cleanly(installed: Path, name: str) -> None:
    result = _verify(installed / name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    text = (installed / name).read_text()
    assert "@" not in text.replace("$MAINPID", "")  # every placeholder filled
    if name.endswith(".service"):
        command = " ".join(default_cloudseed_command())
        assert f"ExecStart={command} --config /etc/cloudseed.toml " in text


def test_verify_would_catch_a_bad_unit(tmp_path: Path) -> None:
    # The check above can fail: a misspelt key or a missing program is reported.
    unit = tmp_path / "broken.service"
    unit.write_text(f"[Service]\nExecStart={sys.executable}\nProtectSystm=strict\n")
    assert "ProtectSystm" in _verify(unit).stderr
    unit.write_text(f"[Service]\nExecStart={tmp_path}/absent\n")
    assert _verify(unit).returncode != 0


@pytest.mark.parametrize("name", USER_TIERS)
def test_user_tiers_run_as_cloudseed_without_capabilities(name: str) -> None:
    settings = unit_settings(name)
    assert settings["User"] == ["cloudseed"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["StateDirectory"] == ["cloudseed"]


def test_dataplane_is_root_bounded_to_the_data_planes_capabilities() -> None:
    settings = unit_settings("cloudseed-dataplane.service")
    assert "User" not in settings
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ExecStart"][0].endswith("dataplane sync --watch")
    assert settings["KillMode"] == ["process"]  # dnsmasq and proxies outlive a restart
    assert set(dataplane_capabilities()) == {
        "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_DAC_OVERRIDE", "CAP_CHOWN"}
    # A private mount namespace would hide `ip netns add`'s mounts from the host.
    for key in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert key not in settings


@pytest.mark.parametrize(("name", "default"), [("cloudseed-control.socket", "127.0.0.1:8774"),
                                               ("cloudseed-agent.socket",
                                                "/run/cloudseed/metadata_proxy")])
def test_socket_units_listen_where_the_settings_default_to(name: str, default: str) -> None:
    # A socket unit's address wins over the settings; by default they agree.
    assert unit_settings(name)["ListenStream"] == [default]
    control, agent = Settings().control, Settings().agent
    assert default in (f"{control.host}:{control.port}", agent.socket_path)


def test_config_file_must_be_absolute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-units", "--root", str(tmp_path), "--config-file", "c.toml"]) != 0
    assert "absolute" in capsys.readouterr().err
