"""Keeps ``<directory>/<server-id>.iso`` in step with the store.

For every server with ``config_drive`` set there is one image, rebuilt when
the change feed says the server changed (``put`` or ``touch``) and removed
when it is deleted or no longer wants a drive. Images are written to a
temporary file in the same directory and renamed over the old one, so a
hypervisor opening the image sees either the old drive or the new one,
never half of one.

The drive's seed is derived from the key, the server id and the drive's
content (``build.build_drive``), never from the store revision: a write
elsewhere in the store, or one that leaves this drive's data as it was, gives
the same bytes, and an image that would not change is not rewritten.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from cloudseed.configdrive.atomic import TEMP_PREFIX, write_atomically
from cloudseed.configdrive.build import IMAGE_SUFFIX, DriveFormat, build_drive
from cloudseed.configdrive.seed import drive_seed
from cloudseed.errors import CloudseedError, Invalid, NotFound
from cloudseed.model import Server, ServerView
from cloudseed.render import RenderOptions
from cloudseed.store.protocol import Change, ChangeOp, EntityKind

log = logging.getLogger(__name__)

# Images hold user-data and keys: the owner writes, the hypervisor's group reads.
IMAGE_FILE_MODE = 0o640
# One page of the change feed; a full page may end inside a revision, so the
# keeper falls back to a full sync instead of trusting its last revision.
CHANGES_PAGE = 10000
# Server ids become file names: UUIDs and similar, never a path.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DriveSource(Protocol):
    """What the keeper reads from the store (``cloudseed.store.protocol.Store`` has it)."""

    def revision(self) -> int: ...
    def list_servers(self) -> Sequence[Server]: ...
    def server_view(self, server_id: str) -> ServerView: ...
    def changes_since(self, revision: int, limit: int = ...) -> Sequence[Change]: ...
    def wait_for_change(self, revision: int, timeout_seconds: float) -> int: ...


class Outcome(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    ABSENT = "absent"  # nothing to remove and nothing to build
    FAILED = "failed"  # the drive could not be built; any old image was removed


class DriveKeeper:
    def __init__(
        self,
        store: DriveSource,
        directory: Path,
        options: RenderOptions,
        seed_key: bytes,
        fmt: DriveFormat = "iso9660",
    ) -> None:
        self.store = store
        self.directory = directory
        self.options = options
        self.seed_key = seed_key
        self.fmt = fmt
        drive_seed(seed_key, "", b"")  # refuse an empty key now, not at the first server

    def path_for(self, server_id: str) -> Path:
        if not _SAFE_ID.match(server_id):
            raise Invalid("server_id", f"{server_id!r} cannot be a file name")
        return self.directory / (server_id + IMAGE_SUFFIX[self.fmt])

    def sync(self) -> int:
        """Make the directory match the store; return the revision it matches (at least)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # Read the revision first: anything after it is replayed by ``follow``.
        revision = self.store.revision()
        wanted = {s.id for s in self.store.list_servers() if s.config_drive}
        for server_id in sorted(wanted):
            self.refresh(server_id)
        suffix = IMAGE_SUFFIX[self.fmt]
        for path in sorted(self.directory.iterdir()):
            stale_image = path.suffix == suffix and path.stem not in wanted
            if stale_image or path.name.startswith(TEMP_PREFIX):
                path.unlink(missing_ok=True)
        return revision

    def refresh(self, server_id: str) -> Outcome:
        """Rebuild, keep or remove one server's image to match the store now."""
        path = self.path_for(server_id)
        try:
            view = self.store.server_view(server_id)
        except NotFound:
            return _remove(path)
        if not view.server.config_drive:
            return _remove(path)
        try:
            image = build_drive(view, self.options, self.fmt, self.seed_key)
        except CloudseedError as error:
            log.error("config drive for server %s not built: %s", server_id, error.message)
            _remove(path)
            return Outcome.FAILED
        if path.exists() and path.read_bytes() == image:
            return Outcome.UNCHANGED
        write_atomically(path, image, IMAGE_FILE_MODE)
        return Outcome.WRITTEN

    def apply(self, changes: Iterable[Change]) -> dict[str, Outcome]:
        """Act on a batch of changes: each changed server once, in feed order."""
        latest_op: dict[str, ChangeOp] = {}
        for change in changes:
            if change.kind == EntityKind.SERVER:
                latest_op.pop(change.id, None)  # keep feed order of the last change
                latest_op[change.id] = change.op
        outcomes = {}
        for server_id, op in latest_op.items():
            if op == ChangeOp.DELETE:
                outcomes[server_id] = _remove(self.path_for(server_id))
            else:
                outcomes[server_id] = self.refresh(server_id)
        return outcomes

    def catch_up(self, revision: int) -> int:
        """Apply every change after ``revision``; return the revision now matched."""
        changes = self.store.changes_since(revision, CHANGES_PAGE)
        if len(changes) >= CHANGES_PAGE:
            return self.sync()
        for server_id, outcome in self.apply(changes).items():
            log.info("config drive %s: %s", server_id, outcome.value)
        return changes[-1].revision if changes else revision

    def run(self, stop: threading.Event, wait_seconds: float = 1.0) -> None:
        """Sync, then follow the change feed until ``stop`` is set."""
        revision = self.sync()
        while not stop.is_set():
            if self.store.wait_for_change(revision, wait_seconds) > revision:
                revision = self.catch_up(revision)


def _remove(path: Path) -> Outcome:
    try:
        path.unlink()
    except FileNotFoundError:
        return Outcome.ABSENT
    return Outcome.REMOVED
