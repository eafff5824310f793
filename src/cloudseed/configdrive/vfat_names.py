"""VFAT directory entries for one name: the 8.3 short entry and its long-name entries.

Drive names such as ``meta_data.json``, ``vendor_data2.json`` or
``2012-08-10`` do not fit 8.3, and all of them are lower case, so each gets
a VFAT long name (UCS-2, 13 characters per 32-byte entry) in front of a
generated short name (``META_D~1.JSO``), the way Windows and Linux write
them (Microsoft FAT specification, "FAT Long Directory Entries"). Short
names are assigned per directory in the caller's (sorted) order, so they are
as reproducible as the rest of the image.
"""

from __future__ import annotations

import struct
from datetime import datetime

DIR_ENTRY_BYTES = 32
ATTR_READ_ONLY = 0x01
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = 0x0F
_LAST_LONG_ENTRY = 0x40
_LONG_NAME_CHARS_PER_ENTRY = 13
# The VFAT limit on a long name, in UCS-2 characters.
MAX_LONG_NAME_CHARS = 255
_SHORT_BASE_CHARS = 8
_SHORT_EXT_CHARS = 3
# Characters a short name may hold besides A-Z and 0-9 (FAT specification,
# "Short Directory Entry": DIR_Name).
_SHORT_NAME_PUNCTUATION = frozenset("!#$%&'()-@^_`{}~")
# MS-DOS device names cannot be file names; DOS readers would open the device.
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)


class ShortNames:
    """Assigns unique 11-byte short names within one directory."""

    def __init__(self) -> None:
        self._taken: set[bytes] = {b".          ", b"..         "}

    def assign(self, name: str) -> tuple[bytes, bool]:
        """The short name for ``name`` and whether a long name must accompany it."""
        base, ext, lossy = _basis(name)
        if not lossy:
            short = _pack(base, ext)
            if short not in self._taken:
                self._taken.add(short)
                display = base + ("." + ext if ext else "")
                return short, display != name
        for number in range(1, 1_000_000):
            tail = f"~{number}"
            short = _pack(base[: _SHORT_BASE_CHARS - len(tail)] + tail, ext)
            if short not in self._taken:
                self._taken.add(short)
                return short, True
        raise AssertionError("a directory cannot hold a million colliding short names")


def _basis(name: str) -> tuple[str, str, bool]:
    """Upper-cased 8.3 basis of ``name``; ``lossy`` when information was dropped."""
    stripped = name.replace(" ", "").lstrip(".")
    lossy = stripped != name
    stem, dot, extension = stripped.rpartition(".")
    if not dot:
        stem, extension = extension, ""
    if "." in stem:
        stem = stem.replace(".", "")
        lossy = True
    base, changed_base = _short_chars(stem)
    ext, changed_ext = _short_chars(extension)
    lossy = lossy or changed_base or changed_ext
    if len(base) > _SHORT_BASE_CHARS or len(ext) > _SHORT_EXT_CHARS or not base:
        lossy = True
    if base in _DEVICE_NAMES:
        lossy = True
    return (base or "_")[:_SHORT_BASE_CHARS], ext[:_SHORT_EXT_CHARS], lossy


def _short_chars(text: str) -> tuple[str, bool]:
    upper = text.upper()
    out = "".join(
        ch if (ch.isascii() and ch.isalnum()) or ch in _SHORT_NAME_PUNCTUATION else "_"
        for ch in upper
    )
    return out, out != upper


def _pack(base: str, ext: str) -> bytes:
    return base.ljust(_SHORT_BASE_CHARS).encode("ascii") + ext.ljust(_SHORT_EXT_CHARS).encode(
        "ascii"
    )


def short_name_checksum(short: bytes) -> int:
    """The checksum each long-name entry carries of its short name."""
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def long_name_slots(name: str) -> int:
    """How many 32-byte entries the long name of ``name`` takes."""
    return -(-len(name.encode("utf-16-le")) // (2 * _LONG_NAME_CHARS_PER_ENTRY))


def long_name_entries(name: str, short: bytes) -> bytes:
    """The long-name entries for ``name``, in on-disk order (last part first)."""
    units = name.encode("utf-16-le")
    if len(units) // 2 > MAX_LONG_NAME_CHARS:
        raise ValueError(f"{name!r} is longer than {MAX_LONG_NAME_CHARS} characters")
    chunk_bytes = 2 * _LONG_NAME_CHARS_PER_ENTRY
    slots = long_name_slots(name)
    # A name that does not fill its last entry ends with NUL, then 0xFFFF padding.
    if len(units) % chunk_bytes:
        units += b"\x00\x00"
    units = units.ljust(slots * chunk_bytes, b"\xff")
    checksum = short_name_checksum(short)
    entries = []
    for ordinal in range(1, slots + 1):
        part = units[(ordinal - 1) * chunk_bytes : ordinal * chunk_bytes]
        order = ordinal | (_LAST_LONG_ENTRY if ordinal == slots else 0)
        entries.append(
            struct.pack(
                "<B10sBBB12sH4s",
                order,
                part[:10],
                ATTR_LONG_NAME,
                0,
                checksum,
                part[10:22],
                0,
                part[22:26],
            )
        )
    return b"".join(reversed(entries))


def short_entry(short: bytes, attributes: int, cluster: int, size: int, stamp: datetime) -> bytes:
    """One 32-byte short directory entry; created, accessed and written all at ``stamp``."""
    date = ((stamp.year - 1980) << 9) | (stamp.month << 5) | stamp.day
    time = (stamp.hour << 11) | (stamp.minute << 5) | (stamp.second // 2)
    return struct.pack(
        "<11sBBBHHHHHHHI",
        short,
        attributes,
        0,  # NT case flags: unused, long names carry the case
        0,  # creation time, tenths of a second
        time,
        date,
        date,  # last access date
        cluster >> 16,  # high word of the first cluster: always 0 on FAT16
        time,
        date,
        cluster & 0xFFFF,
        size,
    )
