"""A 64 MiB FAT16 (VFAT) image, written in memory, byte-for-byte reproducible.

Nova truncates a sparse 64 MiB file, runs ``mkfs.vfat -n config-2`` and
loop-mounts it to copy the tree in (anchors §1.12). Mounting needs root and
mkfs stamps a random volume serial and the current time, so we write the
file system ourselves: a boot sector with the geometry mkfs.fat picks for
64 MiB (FAT16, 2 KiB clusters), two FAT copies, a 512-entry root directory,
then directories and files in contiguous cluster runs in sorted order. Every
timestamp is ``DRIVE_TIMESTAMP`` and the serial is fixed, so the bytes depend
on the file map and the label alone.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cloudseed.configdrive.filemap import DRIVE_TIMESTAMP, FileMap, directories, path_parts
from cloudseed.configdrive.vfat_names import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_VOLUME_ID,
    DIR_ENTRY_BYTES,
    ShortNames,
    long_name_entries,
    long_name_slots,
    short_entry,
)
from cloudseed.errors import Invalid, LimitExceeded

# Nova's size for a vfat config drive.
VFAT_IMAGE_BYTES = 64 * 1024 * 1024
# A fixed serial: mkfs.fat draws a random one, which would make two builds of
# the same drive differ. Guests find the drive by label, never by serial.
VFAT_VOLUME_SERIAL = 0x0C0F_16D2

SECTOR_BYTES = 512
# mkfs.fat's choices for a 64 MiB FAT16 file system: 4 sectors per cluster,
# 4 reserved sectors, 2 FATs, 512 root entries, 32 sectors/track, 8 heads.
SECTORS_PER_CLUSTER = 4
RESERVED_SECTORS = 4
FAT_COUNT = 2
ROOT_DIR_ENTRIES = 512
_SECTORS_PER_TRACK = 32
_HEADS = 8
_MEDIA_FIXED_DISK = 0xF8
# FAT16 is defined by its cluster count (FAT specification, "FAT Type
# Determination"): at least 4085 and fewer than 65525 clusters.
_MIN_FAT16_CLUSTERS = 4085
_MAX_FAT16_CLUSTERS = 65524
_FIRST_DATA_CLUSTER = 2
_END_OF_CHAIN = 0xFFFF
_LABEL_BYTES = 11
_OEM_NAME = b"MSWIN4.1"  # what the FAT specification recommends for compatibility
# Not bootable: "int 18h" (ask the BIOS for the next boot device), then halt.
_BOOT_CODE = b"\xcd\x18\xf4\xeb\xfd"


@dataclass(frozen=True, slots=True)
class _Geometry:
    total_sectors: int
    fat_sectors: int
    cluster_count: int

    @classmethod
    def for_size(cls, size_bytes: int) -> _Geometry:
        total = size_bytes // SECTOR_BYTES
        root_sectors = ROOT_DIR_ENTRIES * DIR_ENTRY_BYTES // SECTOR_BYTES
        # The FAT specification's FAT16 sizing formula.
        fat_sectors = -(
            -(total - RESERVED_SECTORS - root_sectors) // (256 * SECTORS_PER_CLUSTER + FAT_COUNT)
        )
        data_sectors = total - RESERVED_SECTORS - FAT_COUNT * fat_sectors - root_sectors
        clusters = data_sectors // SECTORS_PER_CLUSTER
        if not _MIN_FAT16_CLUSTERS <= clusters <= _MAX_FAT16_CLUSTERS:
            raise Invalid("size_bytes", f"{size_bytes} bytes is not a FAT16 size at 2 KiB clusters")
        return cls(total, fat_sectors, clusters)

    @property
    def fat_offset(self) -> int:
        return RESERVED_SECTORS * SECTOR_BYTES

    @property
    def root_offset(self) -> int:
        return self.fat_offset + FAT_COUNT * self.fat_sectors * SECTOR_BYTES

    @property
    def data_offset(self) -> int:
        return self.root_offset + ROOT_DIR_ENTRIES * DIR_ENTRY_BYTES

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - _FIRST_DATA_CLUSTER) * cluster_bytes()


def cluster_bytes() -> int:
    return SECTORS_PER_CLUSTER * SECTOR_BYTES


@dataclass(slots=True)
class _Node:
    """A directory or file with its place on disk."""

    parts: tuple[str, ...]
    is_dir: bool
    body: bytes = b""
    children: list[_Node] | None = None
    parent: _Node | None = None
    first_cluster: int = 0
    clusters: int = 0


def build_vfat(
    files: FileMap,
    volume_label: str,
    size_bytes: int = VFAT_IMAGE_BYTES,
    volume_serial: int = VFAT_VOLUME_SERIAL,
) -> bytes:
    """A FAT16 image of ``size_bytes`` holding ``files``, labelled ``volume_label``."""
    label = _label_bytes(volume_label)
    geometry = _Geometry.for_size(size_bytes)
    root = _tree(files)
    root_slots = _directory_slots(root, is_root=True)
    if root_slots > ROOT_DIR_ENTRIES:
        raise LimitExceeded(
            "configdrive", ROOT_DIR_ENTRIES, f"the root directory needs {root_slots} entries"
        )
    _allocate(root, geometry)
    image = bytearray(size_bytes)
    image[0:SECTOR_BYTES] = _boot_sector(geometry, label, volume_serial)
    fat = _fat(root, geometry)
    for copy in range(FAT_COUNT):
        start = geometry.fat_offset + copy * geometry.fat_sectors * SECTOR_BYTES
        image[start : start + len(fat)] = fat
    root_entries = short_entry(label, ATTR_VOLUME_ID, 0, 0, DRIVE_TIMESTAMP) + _entries(root)
    image[geometry.root_offset : geometry.root_offset + len(root_entries)] = root_entries
    for node in _walk(root):
        if node.clusters == 0 or node is root:
            continue
        content = _entries(node, parent=node.parent) if node.is_dir else node.body
        offset = geometry.cluster_offset(node.first_cluster)
        image[offset : offset + len(content)] = content
    return bytes(image)


def _label_bytes(volume_label: str) -> bytes:
    raw = volume_label.encode("ascii")
    if not raw or len(raw) > _LABEL_BYTES:
        raise Invalid("volume_label", f"{volume_label!r} must be 1 to {_LABEL_BYTES} characters")
    # Kept as given, lower case included: mkfs.fat -n config-2 (Nova) does the
    # same, and cloud-init looks for "config-2" as well as "CONFIG-2".
    return raw.ljust(_LABEL_BYTES)


def _tree(files: FileMap) -> _Node:
    root = _Node((), True, children=[])
    nodes: dict[tuple[str, ...], _Node] = {(): root}
    for parts in directories(files):
        nodes[parts] = _Node(parts, True, children=[])
    for path in files:
        parts = path_parts(path)
        nodes[parts] = _Node(parts, False, body=files[path])
    for parts, node in nodes.items():
        if parts:
            node.parent = nodes[parts[:-1]]
            assert node.parent.children is not None
            node.parent.children.append(node)
    for node in nodes.values():
        if node.children is not None:
            node.children.sort(key=lambda child: child.parts[-1])
            _refuse_case_twins(node.children)
    return root


def _refuse_case_twins(children: list[_Node]) -> None:
    # FAT looks names up without regard to case: two such names are one file.
    seen: dict[str, str] = {}
    for child in children:
        name = child.parts[-1]
        twin = seen.setdefault(name.casefold(), name)
        if twin != name:
            raise Invalid("path", f"{name!r} and {twin!r} are the same name on FAT")


def _walk(node: _Node) -> Iterator[_Node]:
    """Directories depth-first in name order, each before its contents."""
    yield node
    for child in node.children or ():
        yield from _walk(child)


def _directory_slots(node: _Node, is_root: bool = False) -> int:
    # The root holds the volume label entry; every other directory "." and "..".
    own = 1 if is_root else 2
    return own + sum(1 + long_name_slots(child.parts[-1]) for child in node.children or ())


def _allocate(root: _Node, geometry: _Geometry) -> None:
    """Give every node a contiguous cluster run; directories first, then files."""
    size = cluster_bytes()
    for node in _walk(root):
        if node is root:
            continue
        if node.is_dir:
            node.clusters = -(-_directory_slots(node) * DIR_ENTRY_BYTES // size)
        else:
            node.clusters = -(-len(node.body) // size)
    needed = sum(node.clusters for node in _walk(root))
    if needed > geometry.cluster_count:
        capacity = geometry.cluster_count * size
        raise LimitExceeded(
            "configdrive",
            capacity,
            f"vfat image needs {needed * size} bytes of clusters, more than {capacity}",
        )
    next_cluster = _FIRST_DATA_CLUSTER
    ordered = [n for n in _walk(root) if n.is_dir] + [n for n in _walk(root) if not n.is_dir]
    for node in ordered:
        if node.clusters and node is not root:
            node.first_cluster = next_cluster
            next_cluster += node.clusters


def _fat(root: _Node, geometry: _Geometry) -> bytes:
    entries = [0] * (geometry.cluster_count + _FIRST_DATA_CLUSTER)
    # Entry 0 repeats the media byte; entry 1 has the "clean shut-down" and
    # "no I/O error" bits set.
    entries[0] = 0xFF00 | _MEDIA_FIXED_DISK
    entries[1] = 0xFFFF
    for node in _walk(root):
        for index in range(node.clusters):
            cluster = node.first_cluster + index
            last = index == node.clusters - 1
            entries[cluster] = _END_OF_CHAIN if last else cluster + 1
    table = struct.pack(f"<{len(entries)}H", *entries)
    return table.ljust(geometry.fat_sectors * SECTOR_BYTES, b"\x00")


def _entries(node: _Node, parent: _Node | None = None) -> bytes:
    out = bytearray()
    if parent is not None:
        out += short_entry(b".          ", ATTR_DIRECTORY, node.first_cluster, 0, DRIVE_TIMESTAMP)
        # ".." points at cluster 0 when the parent is the root directory.
        out += short_entry(b"..         ", ATTR_DIRECTORY, parent.first_cluster, 0, DRIVE_TIMESTAMP)
    names = ShortNames()
    for child in node.children or ():
        name = child.parts[-1]
        short, needs_long = names.assign(name)
        if needs_long:
            out += long_name_entries(name, short)
        attributes = ATTR_DIRECTORY if child.is_dir else ATTR_ARCHIVE
        size = 0 if child.is_dir else len(child.body)
        out += short_entry(short, attributes, child.first_cluster, size, DRIVE_TIMESTAMP)
    return bytes(out)


def _boot_sector(geometry: _Geometry, label: bytes, serial: int) -> bytes:
    small_total = geometry.total_sectors if geometry.total_sectors < 0x10000 else 0
    large_total = 0 if small_total else geometry.total_sectors
    sector = bytearray(SECTOR_BYTES)
    sector[0:3] = b"\xeb\x3c\x90"  # jump over the BPB to the boot code at 0x3E
    struct.pack_into(
        "<8sHBHBHHBHHHII",
        sector,
        3,
        _OEM_NAME,
        SECTOR_BYTES,
        SECTORS_PER_CLUSTER,
        RESERVED_SECTORS,
        FAT_COUNT,
        ROOT_DIR_ENTRIES,
        small_total,
        _MEDIA_FIXED_DISK,
        geometry.fat_sectors,
        _SECTORS_PER_TRACK,
        _HEADS,
        0,  # hidden sectors: the image is not partitioned
        large_total,
    )
    # Extended BPB: drive 0x80, signature 0x29, then serial, label, type.
    struct.pack_into("<BBBI11s8s", sector, 36, 0x80, 0, 0x29, serial, label, b"FAT16   ")
    sector[0x3E : 0x3E + len(_BOOT_CODE)] = _BOOT_CODE
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)
