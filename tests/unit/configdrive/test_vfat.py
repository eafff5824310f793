from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from tests.support.configdrive_tools import extract_vfat, read_tree, require_tools, run, write_image

from cloudseed.configdrive.vfat import VFAT_IMAGE_BYTES, VFAT_VOLUME_SERIAL, build_vfat
from cloudseed.errors import Invalid, LimitExceeded

FILES = {
    "ec2/2009-04-04/meta-data.json": b'{"instance-id": "i-00000001"}',
    "ec2/latest/user-data": b"#!/bin/sh\necho hi\n",
    "openstack/2012-08-10/meta_data.json": b'{"uuid": "u"}',
    "openstack/latest/vendor_data.json": b"{}",
    "openstack/latest/vendor_data2.json": b'{"static": {}}',
    # Several clusters, binary.
    "openstack/latest/user_data": bytes(range(256)) * 40,
    "openstack/content/0000": b"",
    # A name long enough for two long-name entries, and an 8.3 upper-case one.
    "openstack/content/a-name-longer-than-thirteen-characters.txt": b"long\n",
    "README.TXT": b"upper case 8.3 needs no long name\n",
}
# Enough entries that the directory spans several 2 KiB clusters.
FILES |= {f"openstack/many/file-{n:03d}.json": str(n).encode() for n in range(120)}


@pytest.fixture(scope="module")
def image() -> bytes:
    return build_vfat(FILES, "config-2")


def test_image_is_64_mib(image: bytes) -> None:
    assert len(image) == VFAT_IMAGE_BYTES == 64 * 1024 * 1024


def test_fsck_fat_finds_nothing_to_repair(image: bytes, tmp_path: Path) -> None:
    require_tools("fsck.fat")
    out = run("fsck.fat", "-n", "-v", str(write_image(tmp_path, "d.img", image)))
    assert "16 bit entries" in out
    assert f"{len(FILES)} files" in out or "files" in out


def test_label_and_serial_are_fixed(image: bytes, tmp_path: Path) -> None:
    require_tools("mlabel", "mdir")
    path = str(write_image(tmp_path, "d.img", image))
    assert run("mlabel", "-s", "-i", path, "::").strip() == "Volume label is config-2"
    serial = f"{VFAT_VOLUME_SERIAL >> 16:04X}-{VFAT_VOLUME_SERIAL & 0xFFFF:04X}"
    assert f"Volume Serial Number is {serial}" in run("mdir", "-i", path, "::")


def test_mtools_lists_the_long_names(image: bytes, tmp_path: Path) -> None:
    require_tools("mdir")
    path = str(write_image(tmp_path, "d.img", image))
    listing = run("mdir", "-i", path, "::/openstack")
    for name in ("2012-08-10", "latest", "content", "many"):
        assert name in listing
    assert "vendor_data2.json" in run("mdir", "-i", path, "::/openstack/latest")


def test_mcopy_extracts_every_file_byte_identical(image: bytes, tmp_path: Path) -> None:
    extracted = extract_vfat(write_image(tmp_path, "d.img", image), tmp_path / "out")
    assert read_tree(extracted) == FILES


def test_each_file_reads_back_alone(image: bytes, tmp_path: Path) -> None:
    require_tools("mcopy")
    path = str(write_image(tmp_path, "d.img", image))
    for name in ("openstack/latest/user_data", "openstack/content/0000", "README.TXT"):
        out = tmp_path / "one"
        run("mcopy", "-n", "-i", path, f"::/{name}", str(out))
        assert out.read_bytes() == FILES[name]


def test_same_files_give_the_same_bytes_whatever_the_clock(
    image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.5)
    again = build_vfat(dict(reversed(FILES.items())), "config-2")
    assert hashlib.sha256(again).digest() == hashlib.sha256(image).digest()


def test_content_over_capacity_is_refused() -> None:
    size = 10 * 1024 * 1024  # the smallest FAT16 size at 2 KiB clusters is about 8.5 MiB
    with pytest.raises(LimitExceeded) as caught:
        build_vfat({"big": b"\0" * size}, "config-2", size_bytes=size)
    assert caught.value.field == "configdrive"
    assert isinstance(caught.value.limit, int)
    assert caught.value.limit < size


def test_root_directory_has_512_entries_at_most() -> None:
    files = {f"f{n:03d}": b"" for n in range(512)}
    with pytest.raises(LimitExceeded) as caught:
        build_vfat(files, "config-2")
    assert caught.value.limit == 512


def test_names_that_differ_only_in_case_are_refused() -> None:
    with pytest.raises(Invalid):
        build_vfat({"dir/user_data": b"a", "dir/USER_DATA": b"b"}, "config-2")


def test_label_longer_than_eleven_characters_is_refused() -> None:
    with pytest.raises(Invalid):
        build_vfat({}, "config-drive-2")


def test_empty_file_map_gives_a_valid_file_system(tmp_path: Path) -> None:
    require_tools("fsck.fat", "mlabel")
    path = str(write_image(tmp_path, "e.img", build_vfat({}, "config-2")))
    run("fsck.fat", "-n", path)
    assert "config-2" in run("mlabel", "-s", "-i", path, "::")


# Re-derive only for an intended change of the FAT writer.
GOLDEN_SHA256 = "109f0ec590f208515bcdec764f475c79a94960b6d7aa582e996652aaf376f2b9"


def test_image_bytes_match_the_golden_hash(image: bytes) -> None:
    assert hashlib.sha256(image).hexdigest() == GOLDEN_SHA256
