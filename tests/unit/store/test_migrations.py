from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cloudseed.errors import ConfigError
from cloudseed.model import Network
from cloudseed.settings import StoreSettings
from cloudseed.store import open_store, open_store_from_settings, upgrade
from cloudseed.store.engine import create_store_engine
from cloudseed.store.migrate import current_revision, downgrade, head_revision
from cloudseed.store.schema import metadata


def _schema_diffs(url: str) -> list[object]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def test_upgrade_from_empty_builds_exactly_the_declared_schema(store_url: str) -> None:
    upgrade(store_url)
    assert _schema_diffs(store_url) == []
    engine = create_store_engine(store_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_again_keeps_the_data(store_url: str) -> None:
    with open_store(store_url) as store, store.write() as writer:
        writer.put_network(Network("n1", "net1"))
    upgrade(store_url)
    with open_store(store_url) as store:
        assert store.get_network("net1") == Network("n1", "net1")
        assert store.revision() == 1


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(store_url: str) -> None:
    upgrade(store_url)
    downgrade(store_url, "base")
    engine = create_store_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(store_url)
    assert _schema_diffs(store_url) == []


def test_open_without_upgrade_refuses_an_unmigrated_database(store_url: str) -> None:
    with pytest.raises(ConfigError, match="cloudseed db upgrade"):
        open_store(store_url, upgrade=False)


def test_open_without_upgrade_accepts_a_migrated_database(store_url: str) -> None:
    upgrade(store_url)
    with open_store(store_url, upgrade=False) as store:
        assert store.revision() == 0


def test_settings_without_a_url_mean_sqlite_in_a_new_data_dir(tmp_path: Path) -> None:
    settings = StoreSettings(data_dir=tmp_path / "deep" / "er")
    with open_store_from_settings(settings) as store:
        assert store.revision() == 0
        assert store.poll_interval_seconds == settings.poll_interval_seconds
    assert (tmp_path / "deep" / "er" / "cloudseed.db").exists()


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://", "not a url"])
def test_unusable_store_urls_are_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)
