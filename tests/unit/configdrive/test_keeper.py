"""The keeper against the real store (SQLite; PostgreSQL too when configured)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from types import MappingProxyType

import pytest
from tests.support.configdrive_sample import OPTIONS
from tests.support.configdrive_tools import extract_iso, read_tree

from cloudseed.configdrive.keeper import IMAGE_FILE_MODE, DriveKeeper, Outcome
from cloudseed.configdrive.layout import drive_content
from cloudseed.configdrive.seed import drive_seed
from cloudseed.errors import ConfigError, Invalid
from cloudseed.model import FixedIp, KeyPair, KeyType, Network, Port, Server, Subnet
from cloudseed.store import SqlStore

KEY = b"test-seed-key"
NET = Network("net-1", "net1")
SUBNET = Subnet("sub-1", "net-1", "10.0.0.0/24", 4, gateway_ip="10.0.0.1")
KEYPAIR = KeyPair("key1", KeyType.SSH, "ssh-ed25519 AAAAC3Nz key1@test", "aa:bb")


def _server(n: int, **changes: object) -> Server:
    base = Server(
        id=f"srv-{n}",
        name=f"server{n}",
        hostname=f"server{n}",
        project_id="proj-1",
        key_name="key1",
        user_data=b"#cloud-config\n",
        config_drive=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _populate(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_network(NET)
        writer.put_subnet(SUBNET)
        writer.put_keypair(KEYPAIR)
        writer.put_server(_server(1))
        writer.put_server(_server(2, config_drive=False))
        writer.put_port(
            Port(
                "port-1",
                "net-1",
                "fa:16:3e:00:00:01",
                (FixedIp("sub-1", "10.0.0.11"),),
                server_id="srv-1",
            )
        )


@pytest.fixture
def keeper(store: SqlStore, tmp_path: Path) -> DriveKeeper:
    _populate(store)
    return DriveKeeper(store, tmp_path / "configdrive", OPTIONS, KEY)


def _expected(store: SqlStore, server_id: str) -> dict[str, bytes]:
    content = drive_content(store.server_view(server_id), OPTIONS)
    return content.files(drive_seed(KEY, server_id, content.digest()))


def _contents(image: Path, tmp_path: Path) -> dict[str, bytes]:
    out = tmp_path / f"x-{time.monotonic_ns()}"
    return read_tree(extract_iso(image, out))


def test_sync_builds_images_only_for_config_drive_servers(
    keeper: DriveKeeper, store: SqlStore, tmp_path: Path
) -> None:
    keeper.sync()
    assert sorted(p.name for p in keeper.directory.iterdir()) == ["srv-1.iso"]
    assert _contents(keeper.path_for("srv-1"), tmp_path) == _expected(store, "srv-1")
    assert keeper.path_for("srv-1").stat().st_mode & 0o777 == IMAGE_FILE_MODE & ~_umask()


def test_changed_server_is_rebuilt(keeper: DriveKeeper, store: SqlStore, tmp_path: Path) -> None:
    revision = keeper.sync()
    with store.write() as writer:
        writer.put_server(_server(1, user_data=b"#!/bin/sh\necho changed\n"))
    keeper.catch_up(revision)
    files = _contents(keeper.path_for("srv-1"), tmp_path)
    assert files["openstack/latest/user_data"] == b"#!/bin/sh\necho changed\n"
    assert files == _expected(store, "srv-1")


def test_touched_server_is_rebuilt_when_its_port_changes(
    keeper: DriveKeeper, store: SqlStore, tmp_path: Path
) -> None:
    revision = keeper.sync()
    with store.write() as writer:
        writer.put_port(
            Port(
                "port-1",
                "net-1",
                "fa:16:3e:00:00:01",
                (FixedIp("sub-1", "10.0.0.99"),),
                server_id="srv-1",
            )
        )
    keeper.catch_up(revision)
    files = _contents(keeper.path_for("srv-1"), tmp_path)
    assert b"10.0.0.99" in files["ec2/latest/meta-data.json"]


def test_deleted_server_loses_its_image(keeper: DriveKeeper, store: SqlStore) -> None:
    revision = keeper.sync()
    with store.write() as writer:
        writer.delete_server("srv-1")
    keeper.catch_up(revision)
    assert not keeper.path_for("srv-1").exists()


def test_server_that_stops_wanting_a_drive_loses_its_image(
    keeper: DriveKeeper, store: SqlStore
) -> None:
    revision = keeper.sync()
    with store.write() as writer:
        writer.put_server(_server(1, config_drive=False))
        writer.put_server(_server(2))
    keeper.catch_up(revision)
    assert sorted(p.name for p in keeper.directory.iterdir()) == ["srv-2.iso"]


def test_unchanged_image_is_not_rewritten(keeper: DriveKeeper) -> None:
    keeper.sync()
    before = keeper.path_for("srv-1").stat()
    assert keeper.refresh("srv-1") == Outcome.UNCHANGED
    after = keeper.path_for("srv-1").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_writes_that_leave_a_drive_as_it_was_do_not_touch_its_image(
    keeper: DriveKeeper, store: SqlStore
) -> None:
    revision = keeper.sync()
    before = keeper.path_for("srv-1").read_bytes()
    stat = keeper.path_for("srv-1").stat()
    with store.write() as writer:
        writer.put_server(_server(2, user_data=b"#!/bin/sh\necho other server\n"))
        writer.put_server(_server(1))  # the same record again: the revision moves on
    assert store.revision() > revision
    assert keeper.catch_up(revision) > revision
    keeper.sync()
    after = keeper.path_for("srv-1").stat()
    assert keeper.path_for("srv-1").read_bytes() == before
    assert (stat.st_ino, stat.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_image_bytes_change_with_the_drive_content(keeper: DriveKeeper, store: SqlStore) -> None:
    keeper.sync()
    before = keeper.path_for("srv-1").read_bytes()
    with store.write() as writer:
        writer.put_server(_server(1, metadata=MappingProxyType({"role": "db"})))
    assert keeper.refresh("srv-1") == Outcome.WRITTEN
    assert keeper.path_for("srv-1").read_bytes() != before


def test_sync_removes_stale_images_and_leftover_temp_files(keeper: DriveKeeper) -> None:
    keeper.directory.mkdir(parents=True)
    (keeper.directory / "srv-gone.iso").write_bytes(b"old")
    (keeper.directory / ".tmp-srv-1.iso.1.2").write_bytes(b"half")
    (keeper.directory / "notes.txt").write_bytes(b"not ours")
    keeper.sync()
    assert sorted(p.name for p in keeper.directory.iterdir()) == ["notes.txt", "srv-1.iso"]


def test_follow_picks_up_a_change_while_running(keeper: DriveKeeper, store: SqlStore) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=keeper.run, args=(stop, 0.1))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not keeper.path_for("srv-1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with store.write() as writer:
            writer.put_server(_server(3))
        while not keeper.path_for("srv-3").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.path_for("srv-3").exists()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_server_id_that_is_not_a_file_name_is_refused(keeper: DriveKeeper) -> None:
    with pytest.raises(Invalid):
        keeper.path_for("../etc/passwd")


def test_empty_seed_key_is_refused(store: SqlStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        DriveKeeper(store, tmp_path, OPTIONS, b"")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
