"""The whole path, view → image, against golden hashes and the real tools."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from tests.support.configdrive_sample import EMPTY_OPTIONS, EMPTY_VIEW, OPTIONS, SEED, VIEW
from tests.support.configdrive_tools import (
    extract_iso,
    extract_vfat,
    read_tree,
    require_tools,
    run,
    write_image,
)

from cloudseed.configdrive.build import (
    DRIVE_FORMATS,
    DriveFormat,
    build_drive,
    build_image,
    drive_file_name,
    parse_format,
)
from cloudseed.configdrive.layout import drive_content, drive_files
from cloudseed.configdrive.seed import drive_seed
from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.model import ServerView

# SHA-256 of each image of the sample views. A mismatch means some byte of a
# drive changed: the renderer's documents, the layout or an image writer. If
# the change is intended, re-derive these (print the digests) in the same
# commit and say why in its message.
GOLDEN = {
    ("sample", "iso9660"): "daa8548eb4caf5857cd18b24d6cf7ea9d5bf27cf30c02f992552cb05f60becb4",
    ("sample", "vfat"): "1214498bf32e36490ed70e84d8212a9f043a3fc089fb0cbaa9b25ac3a38e7857",
    ("sample", "nocloud"): "84a4fcca35b4d1545766275fea9cda9094d532670dbc3d0f166357dbd250e857",
    ("empty", "iso9660"): "9db99d49a5be16c30c09daa6b41ee7f4fb6c9a933d32f259eca122bc8e90eaa9",
    ("empty", "vfat"): "64627452ab89b2ef0d78091df7deff9acf6111b919994c86995a85a8731daf2c",
    ("empty", "nocloud"): "4429bd942108d3a73a8d24375f3a1fa6befb973167d6b7507f597e042fb4d479",
}
VIEWS = {"sample": (VIEW, OPTIONS), "empty": (EMPTY_VIEW, EMPTY_OPTIONS)}


@pytest.mark.parametrize(("which", "fmt"), sorted(GOLDEN))
def test_image_matches_its_golden_hash(which: str, fmt: DriveFormat) -> None:
    view, options = VIEWS[which]
    assert hashlib.sha256(build_image(view, options, fmt, SEED)).hexdigest() == GOLDEN[which, fmt]


@pytest.mark.parametrize("fmt", DRIVE_FORMATS)
def test_building_twice_gives_identical_bytes(fmt: DriveFormat) -> None:
    assert build_image(VIEW, OPTIONS, fmt, SEED) == build_image(VIEW, OPTIONS, fmt, SEED)


@pytest.mark.parametrize("fmt", DRIVE_FORMATS)
def test_another_seed_gives_another_config_drive(fmt: DriveFormat) -> None:
    one = build_image(VIEW, OPTIONS, fmt, SEED)
    other = build_image(VIEW, OPTIONS, fmt, b"\x02" * 32)
    # NoCloud has no random_seed; the config drives differ only by it.
    assert (one == other) is (fmt == "nocloud")


def test_iso_drive_holds_exactly_the_layout(tmp_path: Path) -> None:
    image = write_image(tmp_path, "d.iso", build_image(VIEW, OPTIONS, "iso9660", SEED))
    assert read_tree(extract_iso(image, tmp_path / "out")) == drive_files(VIEW, OPTIONS, SEED)


def test_vfat_drive_holds_exactly_the_layout(tmp_path: Path) -> None:
    require_tools("fsck.fat")
    image = write_image(tmp_path, "d.img", build_image(VIEW, OPTIONS, "vfat", SEED))
    run("fsck.fat", "-n", str(image))
    assert read_tree(extract_vfat(image, tmp_path / "out")) == drive_files(VIEW, OPTIONS, SEED)


def test_nocloud_seed_is_labelled_cidata(tmp_path: Path) -> None:
    require_tools("isoinfo")
    image = write_image(tmp_path, "s.iso", build_image(VIEW, OPTIONS, "nocloud", SEED))
    assert "Volume id: cidata" in run("isoinfo", "-d", "-i", str(image))
    names = set(run("isoinfo", "-R", "-f", "-i", str(image)).split())
    assert names == {"/meta-data", "/user-data", "/network-config", "/vendor-data"}


@pytest.mark.parametrize("fmt", DRIVE_FORMATS)
def test_content_beyond_the_image_capacity_is_a_clear_error(fmt: DriveFormat) -> None:
    # 6 MiB of user-data is on the drive 13 times: more than 64 MiB in all.
    big = replace(VIEW, server=replace(VIEW.server, user_data=b"\0" * (6 * 1024 * 1024)))
    if fmt == "nocloud":
        # The seed holds user-data once.
        big = replace(VIEW, server=replace(VIEW.server, user_data=b"\0" * (65 * 1024 * 1024)))
    with pytest.raises(LimitExceeded) as caught:
        build_image(big, OPTIONS, fmt, SEED)
    assert caught.value.field == "configdrive"
    assert caught.value.limit
    assert "bytes" in caught.value.reason


def test_unknown_format_is_refused() -> None:
    with pytest.raises(Invalid):
        build_image(VIEW, OPTIONS, "udf", SEED)  # type: ignore[arg-type]


KEY = b"operator-seed-key-0123456789"


@pytest.mark.parametrize("fmt", DRIVE_FORMATS)
def test_drive_does_not_depend_on_the_store_revision(fmt: DriveFormat) -> None:
    later = replace(VIEW, revision=VIEW.revision + 1000)
    assert build_drive(VIEW, OPTIONS, fmt, KEY) == build_drive(later, OPTIONS, fmt, KEY)


def test_drive_seed_changes_with_the_content_and_the_key() -> None:
    changed = replace(VIEW, server=replace(VIEW.server, hostname="web-2"))

    def seed_of(view: ServerView, key: bytes) -> str:
        image = build_drive(view, OPTIONS, "iso9660", key)
        files = read_tree_of_iso(image)
        return str(json.loads(files["openstack/latest/meta_data.json"])["random_seed"])

    assert seed_of(VIEW, KEY) == seed_of(VIEW, KEY)
    assert seed_of(changed, KEY) != seed_of(VIEW, KEY)
    assert seed_of(VIEW, b"another-operator-key") != seed_of(VIEW, KEY)


def test_drive_holds_the_layout_with_the_derived_seed(tmp_path: Path) -> None:
    content = drive_content(VIEW, OPTIONS)
    seed = drive_seed(KEY, VIEW.server.id, content.digest())
    image = write_image(tmp_path, "d.iso", build_drive(VIEW, OPTIONS, "iso9660", KEY))
    assert read_tree(extract_iso(image, tmp_path / "out")) == content.files(seed)


def test_unknown_format_name_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(Invalid) as caught:
        parse_format("udf")
    assert caught.value.field == "format"
    assert "iso9660, vfat, nocloud" in caught.value.reason
    assert parse_format("vfat") == "vfat"


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("web-1", "iso9660", "web-1-config-2.iso"),
        ("web-1", "vfat", "web-1-config-2.img"),
        ("web-1", "nocloud", "web-1-cidata.iso"),
        ('a "b"\r\nX-Evil: 1', "iso9660", "a_b_X-Evil_1-config-2.iso"),
        ("../..", "iso9660", "server-config-2.iso"),
        ("étoile", "iso9660", "toile-config-2.iso"),
    ],
)
def test_download_name_is_portable_and_safe_in_a_header(
    name: str, fmt: DriveFormat, expected: str
) -> None:
    assert drive_file_name(name, fmt) == expected


def read_tree_of_iso(image: bytes) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as scratch:
        path = write_image(Path(scratch), "d.iso", image)
        return read_tree(extract_iso(path, Path(scratch) / "out"))
