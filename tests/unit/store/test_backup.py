"""``cloudseed db backup``/``restore``: lossless on both stores and across them."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.first_schema import USER_DATA, fill_first_schema
from tests.support.inventory import FULL_SERVER, KEY, NET, NET2, SUBNET, SUBNET6, seed, snapshot
from tests.support.inventory import port as make_port

from cloudseed.cli.main import main
from cloudseed.errors import ConfigError
from cloudseed.model import Network, Port
from cloudseed.store import SqlStore, open_store
from cloudseed.store.backup import backup, restore
from cloudseed.store.engine import create_store_engine
from cloudseed.store.schema import metadata


def _fill(store: SqlStore) -> None:
    """Every kind of row, with the awkward values: binary user-data, a password,
    a floating IP, two fixed IPs, deletions in the change feed."""
    seed(store)
    with store.write() as writer:
        writer.put_network(NET2)
        writer.put_subnet(SUBNET6)
        writer.put_server(FULL_SERVER)
        writer.put_port(make_port(2, "srv-9", floating_ip="203.0.113.9"))
        writer.put_port(Port("port-3", "net-2", "fa:16:3e:00:00:33", server_id="srv-9"))
    with store.write() as writer:
        writer.delete_port("port-3")
    assert store.set_password_once("srv-9", "pässwörd" * 10)
    assert (
        store.get_network("net1"), store.get_subnet("sub-1"), store.get_keypair("key1")) == (NET, SUBNET, KEY)


def _raw_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the head schema, read independently of backup.py."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_backup_then_restore_into_a_fresh_store_keeps_every_row(
    store: SqlStore, target: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    _fill(store)
    source_url = store.url
    target_url = str(request.getfixturevalue(f"{target}_url"))
    path = tmp_path / "cloudseed.backup"

    counts = backup(source_url, path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert counts["servers"] == 2
    assert counts["passwords"] == 1
    assert restore(target_url, path) == counts
    assert _raw_rows(target_url) == _raw_rows(source_url)
    with open_store(target_url, upgrade=False) as restored:
        assert snapshot(restored) == snapshot(store)
        assert restored.get_server("srv-9").ec2_id == store.get_server("srv-9").ec2_id
        assert restored.get_password("srv-9") == "pässwörd" * 10
        # Writes go on where the source left off: revision and EC2 ids.
        with restored.write() as writer:
            writer.put_network(Network("net-3", "net3"))
        assert restored.revision() == store.revision() + 1


def test_restore_refuses_a_store_with_rows_and_changes_nothing(
    store: SqlStore, tmp_path: Path, sqlite_url: str
) -> None:
    _fill(store)
    path = tmp_path / "b.json"
    backup(store.url, path)
    with open_store(sqlite_url) as other, other.write() as writer:
        writer.put_network(NET2)
    before = _raw_rows(sqlite_url)
    with pytest.raises(ConfigError, match="restore needs an empty store"):
        restore(sqlite_url, path)
    assert _raw_rows(sqlite_url) == before


def test_a_backup_of_the_first_schema_restores_at_head(store_url: str, tmp_path: Path) -> None:
    fill_first_schema(store_url)  # an old store that was never upgraded
    path = tmp_path / "old.json"
    backup(store_url, path)
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restore(target, path)
    with open_store(target, upgrade=False) as restored:
        assert restored.get_server("vm1").user_data == USER_DATA
        assert restored.get_password("srv-1") == "c2VjcmV0LXBhc3N3b3Jk"
        assert restored.revision() == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"format": "something-else"}', "not a cloudseed backup"),
        (b'{"format": "cloudseed-backup", "version": 99}', "format version 99"),
        (b'{"format": "cloudseed-backup", "version": 1, "schema": "zz99", "tables": {}}',
         "revision zz99"),
    ],
)
def test_restore_refuses_files_that_are_not_backups(
    tmp_path: Path, sqlite_url: str, content: bytes, message: str
) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        restore(sqlite_url, path)


def test_cli_backup_and_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    target = f"sqlite:///{tmp_path / 'b.db'}"
    with open_store(source) as store:
        _fill(store)
    path = tmp_path / "backup.json"
    assert main(["db", "backup", str(path), "--store-url", source]) == 0
    assert main(["db", "restore", str(path), "--store-url", target]) == 0
    assert _raw_rows(target) == _raw_rows(source)
    assert main(["db", "restore", str(path), "--store-url", target]) == 1
    assert "restore needs an empty store" in capsys.readouterr().err
