"""The file map every image writer takes: relative POSIX path → bytes.

Writers share two facts about it, kept here so they cannot disagree: which
paths are acceptable, and which directories the paths imply. They also share
the one timestamp every image carries, so the same files always give the same
image bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from cloudseed.errors import Invalid

FileMap = Mapping[str, bytes]

# Every file, directory and volume date on a drive. A fixed instant, not the
# build time: rebuilding a drive for the same revision must give the same
# bytes (golden hashes, no spurious rewrites). 2000-01-01 is inside every
# format's date range (FAT starts at 1980).
DRIVE_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)


def path_parts(path: str) -> tuple[str, ...]:
    """Split a drive path into components, refusing anything that is not plain and relative."""
    parts = tuple(path.split("/"))
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise Invalid("path", f"{path!r} is not a plain relative path")
    return parts


def directories(files: FileMap) -> list[tuple[str, ...]]:
    """Every directory the paths imply, parents before children, sorted."""
    found: set[tuple[str, ...]] = set()
    for path in files:
        parts = path_parts(path)
        for depth in range(1, len(parts)):
            found.add(parts[:depth])
    file_parts = {path_parts(path) for path in files}
    clash = found & file_parts
    if clash:
        raise Invalid("path", f"{'/'.join(min(clash))!r} is both a file and a directory")
    return sorted(found, key=lambda parts: (len(parts), parts))
