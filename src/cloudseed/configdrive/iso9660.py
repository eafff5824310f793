"""ISO9660 images with Joliet and Rock Ridge, byte-for-byte reproducible.

Nova builds its drive with ``genisoimage -J -r -V config-2`` (anchors §1.12):
Rock Ridge names for Linux, Joliet names for Windows, and plain ISO9660
names for anything else. We build the same three name spaces with pycdlib,
in memory, with no external tool.

pycdlib stamps the wall clock (in local time) on every directory record,
every Rock Ridge TF entry and every volume descriptor. We pin all of them to
``DRIVE_TIMESTAMP`` in UTC after the tree is built, and patch the volume
modification date, which pycdlib recomputes while writing, in the written
bytes at its ECMA-119 offset. Together with a sorted insertion order that
makes the image a function of the file map and the label alone.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pycdlib
from pycdlib.dates import DirectoryRecordDate, VolumeDescriptorDate

from cloudseed.configdrive.filemap import DRIVE_TIMESTAMP, FileMap, directories, path_parts
from cloudseed.errors import Invalid, LimitExceeded

# Nova sizes its vfat drive at 64 MiB; the ISO gets the same ceiling so that
# a server whose drive fits one format fits the other.
MAX_ISO_IMAGE_BYTES = 64 * 1024 * 1024

LOGICAL_BLOCK_BYTES = 2048
# ECMA-119 §8.4: volume descriptors start at sector 16; the volume
# modification date is the 17 bytes at offset 830 of each descriptor.
_FIRST_DESCRIPTOR_SECTOR = 16
_MODIFICATION_DATE_OFFSET = 830
_DESCRIPTOR_SET_TERMINATOR = 255
# ECMA-119 §7.5/§7.6: levels 2 and 3 allow 30-character file names (name +
# extension) and 31-character directory names, of d-characters.
_MAX_FILE_NAME_CHARS = 30
_MAX_DIR_NAME_CHARS = 31
_D_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Joliet names are UCS-2, at most 64 characters (Joliet specification §3.1).
_MAX_JOLIET_NAME_CHARS = 64
_PUBLISHER = "cloudseed"


def build_iso9660(files: FileMap, volume_label: str) -> bytes:
    """An ISO9660 + Joliet + Rock Ridge image holding ``files``, labelled ``volume_label``."""
    check_iso_capacity(files)
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=3,
        vol_ident=volume_label,
        pub_ident_str=_PUBLISHER,
        # 0.0 means "not specified"; None would mean "now".
        vol_expire_date=0.0,
        joliet=3,
        rock_ridge="1.09",
    )
    iso_names = _IsoNames()
    for parts in directories(files):
        iso.add_directory(
            iso_path=iso_names.directory(parts),
            rr_name=parts[-1],
            joliet_path=_joliet_path(parts),
        )
    for path in sorted(files):
        parts = path_parts(path)
        body = files[path]
        iso.add_fp(
            io.BytesIO(body),
            len(body),
            iso_path=iso_names.file(parts),
            rr_name=parts[-1],
            joliet_path=_joliet_path(parts),
        )
    _pin_dates(iso)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    image = _pin_modification_dates(bytearray(out.getvalue()))
    if len(image) > MAX_ISO_IMAGE_BYTES:
        raise _too_large(len(image))
    return bytes(image)


def check_iso_capacity(files: FileMap) -> None:
    """Refuse early, before building anything, content that cannot fit the ceiling."""
    blocks = sum(-(-len(body) // LOGICAL_BLOCK_BYTES) for body in files.values())
    if blocks * LOGICAL_BLOCK_BYTES > MAX_ISO_IMAGE_BYTES:
        raise _too_large(blocks * LOGICAL_BLOCK_BYTES)


def _too_large(size: int) -> LimitExceeded:
    return LimitExceeded(
        "configdrive",
        MAX_ISO_IMAGE_BYTES,
        f"ISO9660 image needs at least {size} bytes, more than {MAX_ISO_IMAGE_BYTES}",
    )


class _IsoNames:
    """Plain ISO9660 names (upper case d-characters) for each path, unique per directory.

    Only readers without Rock Ridge or Joliet see these; they are derived
    from the real names so that such a reader can still guess the file.
    """

    def __init__(self) -> None:
        self._by_parts: dict[tuple[str, ...], str] = {(): ""}
        self._taken: dict[str, set[str]] = {}

    def directory(self, parts: tuple[str, ...]) -> str:
        stem = _d_characters(parts[-1])[:_MAX_DIR_NAME_CHARS] or "_"
        return self._assign(parts, stem, "")

    def file(self, parts: tuple[str, ...]) -> str:
        stem, dot, extension = parts[-1].rpartition(".")
        if not dot:
            stem, extension = extension, ""
        ext = _d_characters(extension)[:3]
        room = _MAX_FILE_NAME_CHARS - len(ext) - 1
        name = _d_characters(stem)[:room] or "_"
        return self._assign(parts, name, "." + ext) + ";1"

    def _assign(self, parts: tuple[str, ...], stem: str, suffix: str) -> str:
        parent = self._by_parts[parts[:-1]]
        taken = self._taken.setdefault(parent, set())
        name = stem + suffix
        counter = 1
        while name in taken:
            tail = f"_{counter}"
            name = stem[: len(stem) - len(tail)] + tail + suffix
            counter += 1
        taken.add(name)
        full = f"{parent}/{name}"
        self._by_parts[parts] = full
        return full


def _d_characters(name: str) -> str:
    return "".join(ch if ch in _D_CHARACTERS else "_" for ch in name.upper())


def _joliet_path(parts: tuple[str, ...]) -> str:
    for part in parts:
        if len(part) > _MAX_JOLIET_NAME_CHARS:
            raise Invalid("path", f"{part!r} is longer than {_MAX_JOLIET_NAME_CHARS} characters")
    return "/" + "/".join(parts)


def _pinned_record_date() -> DirectoryRecordDate:
    date = DirectoryRecordDate()
    date.new(0.0)  # initialises every slot; the fields are set below
    date.years_since_1900 = DRIVE_TIMESTAMP.year - 1900
    date.month = DRIVE_TIMESTAMP.month
    date.day_of_month = DRIVE_TIMESTAMP.day
    date.hour = DRIVE_TIMESTAMP.hour
    date.minute = DRIVE_TIMESTAMP.minute
    date.second = DRIVE_TIMESTAMP.second
    date.gmtoffset = 0
    return date


def _pinned_descriptor_date() -> VolumeDescriptorDate:
    date = VolumeDescriptorDate()
    date.new(0.0)  # initialises every slot; the fields are set below
    stamp = DRIVE_TIMESTAMP
    date.year, date.month, date.dayofmonth = stamp.year, stamp.month, stamp.day
    date.hour, date.minute, date.second = stamp.hour, stamp.minute, stamp.second
    date.hundredthsofsecond = 0
    date.gmtoffset = 0
    date.date_str = stamp.strftime("%Y%m%d%H%M%S").encode() + b"00" + b"\x00"
    return date


_RECORD_DATE = _pinned_record_date()
_DESCRIPTOR_DATE = _pinned_descriptor_date()


def _pin_dates(iso: pycdlib.PyCdlib) -> None:
    """Set every date object reachable from the image to DRIVE_TIMESTAMP (UTC)."""
    for date in _date_objects(iso):
        if isinstance(date, DirectoryRecordDate):
            _copy_slots(_RECORD_DATE, date)
        elif date.date_str != VolumeDescriptorDate.EMPTY_STRING:
            _copy_slots(_DESCRIPTOR_DATE, date)


def _date_objects(root: object) -> Iterator[DirectoryRecordDate | VolumeDescriptorDate]:
    # A walk over pycdlib's own objects rather than a list of attribute
    # names: dates hang off volume descriptors, directory records and Rock
    # Ridge entries at several depths, and a walk misses none of them.
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, DirectoryRecordDate | VolumeDescriptorDate):
            yield obj
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif type(obj).__module__.startswith("pycdlib."):
            stack.extend(_attributes(obj))


def _attributes(obj: object) -> Iterator[object]:
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                yield getattr(obj, name)
    yield from getattr(obj, "__dict__", {}).values()


def _copy_slots(
    source: DirectoryRecordDate | VolumeDescriptorDate,
    target: DirectoryRecordDate | VolumeDescriptorDate,
) -> None:
    for name in type(source).__slots__:
        setattr(target, name, getattr(source, name))


def _pin_modification_dates(image: bytearray) -> bytearray:
    sector = _FIRST_DESCRIPTOR_SECTOR
    while (sector + 1) * LOGICAL_BLOCK_BYTES <= len(image):
        start = sector * LOGICAL_BLOCK_BYTES
        if image[start] == _DESCRIPTOR_SET_TERMINATOR:
            break
        if image[start + 1 : start + 6] == b"CD001" and image[start] in (1, 2):
            offset = start + _MODIFICATION_DATE_OFFSET
            image[offset : offset + 17] = _DESCRIPTOR_DATE.record()
        sector += 1
    return image
