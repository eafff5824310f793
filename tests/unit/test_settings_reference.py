"""The settings reference is generated from the schema and loads back to the defaults."""

from __future__ import annotations

import enum
import tomllib
from pathlib import Path
from typing import get_args

import pytest

from cloudseed.cli.main import main
from cloudseed.configdrive.build import DRIVE_FORMATS, DriveFormat
from cloudseed.errors import ConfigError
from cloudseed.settings import (
    ApiMode,
    DriveFormatSetting,
    ProxyImplementation,
    Settings,
    load_settings,
)
from cloudseed.settings_reference import MASK, example_toml, reference_markdown, sections

REPO = Path(__file__).resolve().parents[2]


def test_example_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cloudseed.toml"
    path.write_text(example_toml())
    assert load_settings(path, environ={}) == Settings()


def test_example_names_every_setting_with_a_description() -> None:
    example = tomllib.loads(example_toml())
    for section in sections():
        table = example[section.name] if section.name else example
        for doc in section.settings:
            assert doc.name in table, doc.dotted
            assert doc.description, (
                f"{doc.dotted} has no description: write a comment line above the field "
                "in cloudseed/settings.py")
            assert f"# {doc.description.split()[0]}" in example_toml()


def test_committed_configuration_reference_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "CONFIGURATION.md").read_text()
    assert committed == reference_markdown(), (
        "docs/CONFIGURATION.md is stale: run "
        "`.venv/bin/cloudseed config example --format markdown > docs/CONFIGURATION.md`")


@pytest.mark.parametrize(
    ("key", "enum_type"),
    [("dataplane.proxy_implementation", ProxyImplementation),
     ("proxy.implementation", ProxyImplementation),
     ("api.mode", ApiMode),
     ("configdrive.format", DriveFormatSetting)],
)
def test_enumerated_setting_refuses_a_typo_naming_the_choices(
    key: str, enum_type: type[enum.Enum]
) -> None:
    section, name = key.split(".")
    env = {f"CLOUDSEED_{section.upper()}_{name.upper()}": "HAProxy"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert key in caught.value.message
    assert "'HAProxy'" in caught.value.message
    for member in enum_type:
        assert repr(member.value) in caught.value.message


def test_enumerated_setting_loads_as_its_enum(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[dataplane]\nproxy_implementation = "haproxy"\n[api]\nmode = "direct"\n')
    settings = load_settings(path, environ={})
    assert settings.dataplane.proxy_implementation is ProxyImplementation.HAPROXY
    assert settings.api.mode is ApiMode.DIRECT


def test_drive_format_setting_offers_exactly_the_formats_the_builder_makes() -> None:
    assert tuple(DriveFormatSetting) == DRIVE_FORMATS == get_args(DriveFormat)


def test_unknown_setting_points_at_the_example() -> None:
    with pytest.raises(ConfigError, match=r"api\.bogus.*cloudseed config example"):
        load_settings(environ={"CLOUDSEED_API_BOGUS": "1"})


def test_config_check_names_the_bad_key_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[dataplane]\nproxy_implementation = "HAProxy"\n')
    assert main(["config", "check", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "dataplane.proxy_implementation" in err
    assert "'HAProxy'" in err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[proxy]\nhaproxy_bin = \"/x\"\n")
    assert main(["config", "check", str(unknown)]) != 0
    assert "proxy.haproxy_bin" in capsys.readouterr().err


def test_config_check_accepts_the_example_and_ignores_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDSEED_API_MODE", "nonsense")
    good = tmp_path / "good.toml"
    assert main(["config", "example"]) == 0
    good.write_text(capsys.readouterr().out)
    assert main(["config", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out


def test_config_check_of_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_config_show_prints_effective_settings_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-held-secret\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'shared_secret_file = "{secret_file}"\n'
        '[store]\nurl = "postgresql://cs:db-password@db.example/cloudseed"\n'
        '[control]\ntokens = ["token-one", "token-two"]\n')
    monkeypatch.setenv("CLOUDSEED_API_PORT", "8999")
    monkeypatch.setenv("CLOUDSEED_API_TOKEN_KEY", "token-key-value")
    assert main(["--config", str(config), "config", "show"]) == 0
    out = capsys.readouterr().out
    for secret in ("file-held-secret", "db-password", "token-one", "token-two",
                   "token-key-value"):
        assert secret not in out
    shown = tomllib.loads(out)
    assert shown["api"]["port"] == 8999
    assert shown["shared_secret"] == MASK
    assert shown["control"]["tokens"] == [MASK, MASK]
    assert shown["store"]["url"] == f"postgresql://cs:{MASK}@db.example/cloudseed"
    assert shown["api"]["token_key_also_accepted"] == ""  # unset stays visibly unset


def test_data_dir_defaults_to_systemds_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/cloudseed:/var/lib/other")
    assert load_settings(environ={}).store.data_dir == Path("/var/lib/cloudseed")
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/state")
    assert load_settings(environ={}).store.data_dir == Path("/srv/state")


def test_every_section_can_be_set_from_the_environment() -> None:
    import dataclasses

    from cloudseed.settings import Settings, load_settings

    defaults = Settings()
    for section in dataclasses.fields(Settings):
        value = getattr(defaults, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        # The first field of a boolean, integer or string type, changed through the environment.
        for field in dataclasses.fields(value):
            current = getattr(value, field.name)
            if isinstance(current, bool):
                wanted: object = not current
            elif isinstance(current, int):
                wanted = current + 1
            else:
                continue
            name = f"CLOUDSEED_{section.name.upper()}_{field.name.upper()}"
            loaded = load_settings(environ={name: str(wanted).lower()})
            assert getattr(getattr(loaded, section.name), field.name) == wanted, name
            break
