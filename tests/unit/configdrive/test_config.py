"""Config drive settings: read once, each problem naming the setting to fix."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import pytest

from cloudseed.cli.serve import build_children
from cloudseed.configdrive.config import check_drive_settings
from cloudseed.errors import ConfigError
from cloudseed.secret_files import secret_environment
from cloudseed.settings import load_settings

KEY = "k" * 32


def test_settings_come_from_the_environment_with_the_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "seed_key"
    key_file.write_text(KEY + "\n")
    settings = load_settings(
        environ={
            "CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE": str(key_file),
            "CLOUDSEED_CONFIGDRIVE_FORMAT": "vfat",
            "CLOUDSEED_STORE_DATA_DIR": str(tmp_path),
        }
    )
    config = check_drive_settings(settings)
    assert config.seed_key == KEY.encode()
    assert config.fmt == "vfat"
    assert config.directory == tmp_path / "configdrive"
    assert KEY not in repr(settings.configdrive)


def test_missing_seed_key_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"configdrive\.seed_key.*seed_key_file"):
        check_drive_settings(load_settings(environ={}))


def test_short_seed_key_is_refused() -> None:
    settings = load_settings(environ={"CLOUDSEED_CONFIGDRIVE_SEED_KEY": "short"})
    with pytest.raises(ConfigError, match="at least 16"):
        check_drive_settings(settings)


def test_unknown_format_names_the_setting_and_the_choices() -> None:
    # Refused when the settings load, before any component starts.
    with pytest.raises(ConfigError, match=r"configdrive\.format.*'udf'.*'iso9660', 'vfat', 'nocloud'"):
        load_settings(
            environ={"CLOUDSEED_CONFIGDRIVE_SEED_KEY": KEY, "CLOUDSEED_CONFIGDRIVE_FORMAT": "udf"}
        )


def test_drives_share_the_api_host_name_domain_and_static_vendor_data(tmp_path: Path) -> None:
    vendordata = tmp_path / "vendor.json"
    vendordata.write_text(json.dumps({"cloud-init": "#cloud-config\n"}))
    settings = load_settings(
        environ={
            "CLOUDSEED_CONFIGDRIVE_SEED_KEY": KEY,
            "CLOUDSEED_CONFIGDRIVE_DIRECTORY": str(tmp_path / "drives"),
            "CLOUDSEED_API_DHCP_DOMAIN": "lab.example",
            "CLOUDSEED_API_VENDORDATA_STATIC_FILE": str(vendordata),
        }
    )
    config = check_drive_settings(settings)
    options = config.render_options(date(2025, 1, 1))
    assert options.dhcp_domain == "lab.example"
    assert options.static_vendordata == {"cloud-init": "#cloud-config\n"}
    assert config.directory == tmp_path / "drives"


def test_serve_generates_a_seed_key_once_and_passes_it_by_path(tmp_path: Path) -> None:
    settings = load_settings(environ={"CLOUDSEED_STORE_DATA_DIR": str(tmp_path)})
    env = secret_environment(settings)
    key_file = Path(env["CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert secret_environment(settings) == env  # the same file, not a new key
    tier_settings = load_settings(environ={**env, "CLOUDSEED_STORE_DATA_DIR": str(tmp_path)})
    assert check_drive_settings(tier_settings).seed_key == key_file.read_text().strip().encode()


def test_configured_seed_key_is_not_replaced(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"CLOUDSEED_STORE_DATA_DIR": str(tmp_path), "CLOUDSEED_CONFIGDRIVE_SEED_KEY": KEY}
    )
    assert "CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE" not in secret_environment(settings)


def test_serve_runs_the_keeper_as_the_configdrive_tier() -> None:
    args = argparse.Namespace(config=None, log_level="info", tiers="control,configdrive", proxy=[])
    children = build_children(args, {"CLOUDSEED_AGENT_SOCKET_PATH": "/nonexistent"})
    keeper = next(child for child in children if child.name == "configdrive")
    assert list(keeper.argv[-2:]) == ["configdrive", "keep"]
