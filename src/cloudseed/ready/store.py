"""The per-host ready map on disk: an LMDB environment, one writer, many readers.

One renderer process per host writes (``ReadyMap.writer``); every API worker
on the host reads (``ReadyMap.reader``). LMDB is memory-mapped: a read is a
B-tree walk in the page cache, with no lock, no system call and no copy
beyond the value returned, and every process shares the same pages, so the
host holds one copy of the documents however many workers read them.

Two databases: ``servers`` (server id → entry, ``ready/codec.py``) and
``meta``: the store the map was built from (``store_id``) and the newest
store revision whose changes it holds (``revision``). The map is a cache of
the store and is never the only copy of anything: it is written without
fsync (a host crash may lose its last writes, and the renderer rebuilds a map
whose ``meta`` it cannot trust), and a reader checks every entry's revision
against the change feed before serving it (``api/ready.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import lmdb

_SERVERS = b"servers"
_META = b"meta"
_STORE_ID = b"store_id"
_REVISION = b"revision"
_FINGERPRINT = b"fingerprint"
# Readers are processes × threads; workers read on their loop thread only.
MAX_READERS = 1024

# Open read-only maps of this process by path, with how many hold each.
_READERS: dict[str, tuple[ReadyMap, int]] = {}


class ReadyMap:
    """An open map. Not shared across ``fork``: each process opens its own."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._servers = env.open_db(_SERVERS, create=not env.flags()["readonly"])
        self._meta = env.open_db(_META, create=not env.flags()["readonly"])
        self.path = env.path()

    @classmethod
    def writer(cls, path: Path, max_bytes: int) -> ReadyMap:
        """Open (creating if needed) for writing; only the renderer does this."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = lmdb.open(
            str(path), map_size=max_bytes, max_dbs=2, max_readers=MAX_READERS,
            # A cache: rebuilt when in doubt, so no fsync per write.
            sync=False, metasync=False,
            # Random reads of a map larger than memory: no read-ahead.
            readahead=False, mode=0o600)
        return cls(env)

    @classmethod
    def reader(cls, path: Path) -> ReadyMap | None:
        """Open for reading, or None while the renderer has not made it yet.

        LMDB allows one open of an environment per process (its locks are the
        process's), so readers in one process share it, counted."""
        key = str(path)
        shared = _READERS.get(key)
        if shared is not None:
            _READERS[key] = (shared[0], shared[1] + 1)
            return shared[0]
        if not (path / "data.mdb").exists():
            return None
        try:
            env = lmdb.open(key, readonly=True, max_dbs=2, max_readers=MAX_READERS,
                            readahead=False, create=False)
            opened = cls(env)
        except lmdb.Error:
            return None
        _READERS[key] = (opened, 1)
        return opened

    def close(self) -> None:
        shared = _READERS.get(self.path)
        if shared is not None and shared[0] is self:
            if shared[1] > 1:
                _READERS[self.path] = (self, shared[1] - 1)
                return
            del _READERS[self.path]
        self._env.close()

    # -- reading --------------------------------------------------------------

    def _read(self, db: lmdb._Database) -> lmdb.Transaction:
        """A read transaction. The writer's file grew past what this reader mapped
        (it opened when the map was small): adopt the new size and begin again."""
        try:
            return self._env.begin(db=db)
        except lmdb.MapResizedError:
            self._env.set_mapsize(0)
            return self._env.begin(db=db)

    def get(self, server_id: str) -> bytes | None:
        with self._read(self._servers) as txn:
            value = txn.get(server_id.encode())
        return value if value is None else bytes(value)

    def get_at(self, server_id: str) -> tuple[bytes | None, int]:
        """The entry and the map's revision, read in one transaction: every change up
        to that revision is in what was read."""
        with self._read(self._servers) as txn:
            value = txn.get(server_id.encode())
            revision = txn.get(_REVISION, db=self._meta)
        return (None if value is None else bytes(value)), int(bytes(revision)) if revision else 0

    def built_from(self) -> tuple[str, int]:
        """(store id, revision) the map holds; ("", 0) for an empty map."""
        with self._read(self._meta) as txn:
            store_id = txn.get(_STORE_ID)
            revision = txn.get(_REVISION)
        return (bytes(store_id).decode() if store_id else "",
                int(bytes(revision)) if revision else 0)

    def __len__(self) -> int:
        with self._read(self._servers) as txn:
            return int(txn.stat(self._servers)["entries"])

    # -- writing (the renderer) -------------------------------------------------

    def reset(self, store_id: str) -> None:
        """Empty the map and mark it as built from ``store_id`` at revision 0."""
        with self._env.begin(write=True) as txn:
            txn.drop(self._servers, delete=False)
            txn.put(_STORE_ID, store_id.encode(), db=self._meta)
            txn.put(_REVISION, b"0", db=self._meta)
            txn.delete(_FINGERPRINT, db=self._meta)

    def write(self, puts: Iterable[tuple[str, bytes]], deletes: Iterable[str],
              revision: int | None = None) -> None:
        """One transaction: readers see all of it or none of it."""
        with self._env.begin(write=True, db=self._servers) as txn:
            for server_id, blob in puts:
                txn.put(server_id.encode(), blob)
            for server_id in deletes:
                txn.delete(server_id.encode())
            if revision is not None:
                txn.put(_REVISION, str(revision).encode(), db=self._meta)

    def write_range(self, after: str, last: str, puts: Sequence[tuple[str, bytes]]) -> None:
        """One page of a whole-fleet pass: the entries of ids in (``after``, ``last``]
        become exactly ``puts`` (servers gone from the store meanwhile are deleted)."""
        keep = {server_id.encode() for server_id, _ in puts}
        with self._env.begin(write=True, db=self._servers) as txn:
            self._delete_between(txn, after.encode(), last.encode(), keep)
            for server_id, blob in puts:
                txn.put(server_id.encode(), blob)

    def end_pass(self, after: str, fingerprint: str) -> None:
        """The end of a whole-fleet pass: no server sorts after ``after``, and every
        entry is rendered with ``fingerprint`` (``rendered_with``)."""
        with self._env.begin(write=True, db=self._servers) as txn:
            self._delete_between(txn, after.encode(), None, set())
            txn.put(_FINGERPRINT, fingerprint.encode(), db=self._meta)

    def rendered_with(self) -> str:
        """The fingerprint of the last whole-fleet pass that finished ("" for none):
        a pass cut short leaves the one before it, so the next renderer redoes it."""
        with self._read(self._meta) as txn:
            value = txn.get(_FINGERPRINT)
        return bytes(value).decode() if value else ""

    def _delete_between(self, txn: lmdb.Transaction, after: bytes, last: bytes | None,
                        keep: set[bytes]) -> None:
        cursor = txn.cursor()
        found = cursor.set_range(after)
        while found:
            key = bytes(cursor.key())
            if key == after:
                found = cursor.next()
                continue
            if last is not None and key > last:
                break
            # delete() moves to the next entry itself.
            found = cursor.next() if key in keep else cursor.delete()

    def sync(self) -> None:
        with contextlib.suppress(lmdb.Error):
            self._env.sync(True)


def map_path(base: Path, store_id: str) -> Path:
    """The map of one store: its own directory under ``api.ready_map_dir``."""
    return base / store_id


__all__ = ["ReadyMap", "map_path"]
