"""Secrets reach the tiers as file paths; a store's files are its owner's alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cloudseed.errors import ConfigError
from cloudseed.secret_files import secret_environment, without_secrets
from cloudseed.settings import StoreSettings, load_settings
from cloudseed.store import open_store, open_store_from_settings
from cloudseed.store.engine import normalise_url, redacted_url, secure_data_dir

PG_URL = "postgresql://cloudseed:pg-pass-7f3a@db.example:5432/cloudseed"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_given_by_value_leave_the_environment_for_files(tmp_path: Path) -> None:
    inherited = {
        "CLOUDSEED_SHARED_SECRET": "shared-9c1e",
        "CLOUDSEED_CONTROL_TOKENS": "tok-a,tok-b",
        "CLOUDSEED_STORE_URL": PG_URL,
        "CLOUDSEED_API_PORT": "8775",
        "PATH": "/usr/bin",
    }
    settings = load_settings(environ={**inherited, "CLOUDSEED_STORE_DATA_DIR": str(tmp_path)})
    env = secret_environment(settings, inherited)
    assert inherited == {"CLOUDSEED_API_PORT": "8775", "PATH": "/usr/bin"}
    assert not any(v in value for value in env.values()
                   for v in ("shared-9c1e", "tok-a", "pg-pass-7f3a"))
    for name in ("CLOUDSEED_SHARED_SECRET_FILE", "CLOUDSEED_CONTROL_TOKENS_FILE",
                 "CLOUDSEED_STORE_URL_FILE"):
        assert mode(Path(env[name])) == 0o600
        assert mode(Path(env[name]).parent) == 0o700
    # What a tier loads from that environment is what the operator gave.
    tier = load_settings(environ={**inherited, **env})
    assert tier.shared_secret.reveal() == "shared-9c1e"
    assert [t.reveal() for t in tier.control.tokens] == ["tok-a", "tok-b"]
    assert tier.store.url == PG_URL
    # Not given: generated once, also by path.
    assert Path(env["CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE"]).parent == tmp_path / "secrets"
    # Except the token key: unset, every tier takes the store's (api/config.py).
    assert "CLOUDSEED_API_TOKEN_KEY_FILE" not in env


def test_a_store_url_without_password_is_passed_as_is(tmp_path: Path) -> None:
    settings = load_settings(environ={"CLOUDSEED_STORE_DATA_DIR": str(tmp_path)})
    env = secret_environment(settings, {})
    assert env["CLOUDSEED_STORE_URL"] == f"sqlite:///{tmp_path / 'cloudseed.db'}"
    assert "CLOUDSEED_STORE_URL_FILE" not in env


def test_children_that_need_no_secret_get_none() -> None:
    env = {"CLOUDSEED_STORE_URL": PG_URL, "CLOUDSEED_API_TOKEN_KEY": "k", "PGPASSWORD": "p",
           "CLOUDSEED_SHARED_SECRET_FILE": "/path", "HOME": "/root"}
    assert without_secrets(env) == {"CLOUDSEED_SHARED_SECRET_FILE": "/path", "HOME": "/root"}
    plain = {"CLOUDSEED_STORE_URL": "sqlite:////var/lib/cloudseed/cloudseed.db"}
    assert without_secrets(plain) == plain


def test_urls_are_shown_without_their_password() -> None:
    assert redacted_url(PG_URL) == "postgresql://cloudseed:***@db.example:5432/cloudseed"
    assert "pg-pass" not in redacted_url("postgresql://u:pg-pass@[bad/x")
    with pytest.raises(ConfigError) as caught:
        normalise_url("postgresql://u:pg-pass-7f3a@host:notaport/db")
    assert "pg-pass-7f3a" not in caught.value.message
    assert "***" in caught.value.message


def test_sqlite_files_are_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        database = tmp_path / "data" / "cloudseed.db"
        with open_store(f"sqlite:///{database}") as store:
            assert store.revision() == 0
            names = sorted(p.name for p in database.parent.iterdir())
            modes = {p.name: mode(p) for p in database.parent.iterdir()}
    finally:
        os.umask(old)
    assert names == ["cloudseed.db", "cloudseed.db-shm", "cloudseed.db-wal"]
    assert set(modes.values()) == {0o600}, modes
    assert mode(database.parent) == 0o700


def test_existing_loose_sqlite_files_are_tightened_on_open(tmp_path: Path) -> None:
    database = tmp_path / "cloudseed.db"
    with open_store(f"sqlite:///{database}"):
        pass
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    (tmp_path / "cloudseed.db-wal").touch(mode=0o644)
    with open_store(f"sqlite:///{database}"):
        assert {p.name: mode(p) for p in tmp_path.iterdir() if p.name.startswith("cloudseed")} \
            == dict.fromkeys(["cloudseed.db", "cloudseed.db-wal", "cloudseed.db-shm"], 0o600)


def test_opening_the_default_store_locks_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    with open_store_from_settings(StoreSettings(data_dir=data_dir)):
        pass
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "cloudseed.db") == 0o600


def test_serve_locks_the_data_dir(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "data"
    secure_data_dir(fresh)
    assert mode(fresh) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    secure_data_dir(loose)
    assert mode(loose) == 0o700
