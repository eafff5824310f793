from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudseed.api.config import Mode, check_api_settings
from cloudseed.errors import ConfigError
from cloudseed.settings import ApiSettings, Secret, Settings


def settings(secret: str = "s", **api: Any) -> Settings:
    return Settings(api=ApiSettings(**api), shared_secret=Secret(secret))


def test_proxy_mode_without_shared_secret_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="shared_secret"):
        check_api_settings(settings(secret="", mode="proxy"))


def test_direct_mode_needs_no_secret() -> None:
    assert check_api_settings(settings(secret="", mode="direct")).mode is Mode.DIRECT


def test_unknown_mode_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"api\.mode.*'magic'"):
        check_api_settings(settings(mode="magic"))


def test_bad_cidr_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"api\.trusted_proxy_cidrs"):
        check_api_settings(settings(mode="direct", trusted_proxy_cidrs=("10.0.0.300/8",)))


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")],
)
def test_invalid_static_vendordata_refuses_to_start(
    tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "vendor.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"api\.vendordata_static_file.*{match}"):
        check_api_settings(settings(vendordata_static_file=str(path)))


def test_missing_static_vendordata_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        check_api_settings(settings(vendordata_static_file=str(tmp_path / "nope.json")))


def test_static_vendordata_is_read_once_at_start(tmp_path: Path) -> None:
    path = tmp_path / "vendor.json"
    path.write_text('{"cloud-init": "#cloud-config\\n"}')
    config = check_api_settings(settings(vendordata_static_file=str(path)))
    path.write_text("changed later, not read")
    assert config.static_vendordata == {"cloud-init": "#cloud-config\n"}


@pytest.mark.parametrize(
    "target", ["nourl", "@http://x", "name@ftp://x/", "name@http://", "static@http://x/"]
)
def test_bad_dynamic_target_names_the_setting(target: str) -> None:
    with pytest.raises(ConfigError, match=r"api\.vendordata_dynamic_targets"):
        check_api_settings(settings(vendordata_dynamic_targets=(target,)))


def test_duplicate_dynamic_target_names_are_refused() -> None:
    targets = ("a@http://127.0.0.1:1/", "a@http://127.0.0.1:2/")
    with pytest.raises(ConfigError, match="used twice"):
        check_api_settings(settings(vendordata_dynamic_targets=targets))


def test_short_token_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"api\.token_key"):
        check_api_settings(settings(token_key=Secret("short")))


def test_empty_token_key_becomes_a_random_one() -> None:
    first = check_api_settings(settings()).token_key
    assert len(first) == 32
    assert first != check_api_settings(settings()).token_key
