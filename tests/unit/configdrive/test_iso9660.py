from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.configdrive_tools import extract_iso, read_tree, require_tools, run, write_image

from cloudseed.configdrive.iso9660 import MAX_ISO_IMAGE_BYTES, build_iso9660
from cloudseed.errors import Invalid, LimitExceeded

FILES = {
    "ec2/2009-04-04/meta-data.json": b'{"instance-id": "i-00000001"}',
    "ec2/latest/user-data": b"#!/bin/sh\necho hi\n",
    "openstack/2012-08-10/meta_data.json": b'{"uuid": "u"}',
    "openstack/latest/vendor_data.json": b"{}",
    "openstack/latest/vendor_data2.json": b'{"static": {}}',
    "openstack/latest/user_data": bytes(range(256)) * 20,  # binary, several blocks
    "openstack/content/0000": b"",
    "openstack/content/0001": b"motd\n",
}


@pytest.fixture(scope="module")
def image() -> bytes:
    return build_iso9660(FILES, "config-2")


def test_volume_id_is_the_label(image: bytes, tmp_path: Path) -> None:
    require_tools("isoinfo")
    info = run("isoinfo", "-d", "-i", str(write_image(tmp_path, "d.iso", image)))
    assert "Volume id: config-2" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info


@pytest.mark.parametrize("namespace", ["-R", "-J"])
def test_rock_ridge_and_joliet_show_the_real_names(
    image: bytes, tmp_path: Path, namespace: str
) -> None:
    require_tools("isoinfo")
    listing = run("isoinfo", namespace, "-f", "-i", str(write_image(tmp_path, "d.iso", image)))
    shown = set(listing.split())
    assert {"/" + path for path in FILES} <= shown
    assert "/openstack/2012-08-10" in shown


def test_plain_names_are_unique_upper_case_d_characters(image: bytes, tmp_path: Path) -> None:
    require_tools("isoinfo")
    listing = run("isoinfo", "-f", "-i", str(write_image(tmp_path, "d.iso", image))).split()
    assert "/OPENSTACK/2012_08_10/META_DATA.JSO;1" in listing
    assert "/OPENSTACK/LATEST/VENDOR_DATA.JSO;1" in listing
    assert "/OPENSTACK/LATEST/VENDOR_DATA2.JSO;1" in listing
    assert len(listing) == len(set(listing))
    for name in listing:
        assert name == name.upper()


def test_xorriso_extracts_every_file_byte_identical(image: bytes, tmp_path: Path) -> None:
    extracted = extract_iso(write_image(tmp_path, "d.iso", image), tmp_path / "out")
    assert read_tree(extracted) == FILES


def test_same_files_give_the_same_bytes_whatever_the_clock(
    image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.5)
    assert build_iso9660(dict(reversed(FILES.items())), "config-2") == image


def test_image_does_not_depend_on_the_time_zone(image: bytes) -> None:
    script = (
        "import sys, hashlib\n"
        "from tests.unit.configdrive.test_iso9660 import FILES\n"
        "from cloudseed.configdrive.iso9660 import build_iso9660\n"
        "sys.stdout.write(hashlib.sha256(build_iso9660(FILES, 'config-2')).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"TZ": tz, "PYTHONPATH": "."},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for tz in ("UTC", "Pacific/Chatham", "America/St_Johns")
    }
    assert digests == {hashlib.sha256(image).hexdigest()}


def test_dates_are_the_fixed_drive_timestamp(image: bytes, tmp_path: Path) -> None:
    require_tools("xorriso")
    listing = run(
        "xorriso", "-indev", str(write_image(tmp_path, "d.iso", image)),
        "-find", "/", "-exec", "lsdl",
    )  # fmt: skip
    lines = [line for line in listing.splitlines() if "'/" in line]
    assert lines
    assert all("Jan  1  2000" in line for line in lines)


def test_content_over_the_ceiling_is_refused_before_building() -> None:
    with pytest.raises(LimitExceeded) as caught:
        build_iso9660({"big": b"\0" * (MAX_ISO_IMAGE_BYTES + 1)}, "config-2")
    assert caught.value.field == "configdrive"
    assert caught.value.limit == MAX_ISO_IMAGE_BYTES


@pytest.mark.parametrize("path", ["/abs", "a/../b", "a//b", "", "a/./b"])
def test_paths_must_be_plain_and_relative(path: str) -> None:
    with pytest.raises(Invalid):
        build_iso9660({path: b"x"}, "config-2")


def test_a_path_cannot_be_file_and_directory() -> None:
    with pytest.raises(Invalid):
        build_iso9660({"a": b"x", "a/b": b"y"}, "config-2")


def test_empty_file_map_gives_a_valid_image(tmp_path: Path) -> None:
    require_tools("isoinfo")
    image = build_iso9660({}, "config-2")
    assert "Volume id: config-2" in run(
        "isoinfo", "-d", "-i", str(write_image(tmp_path, "e.iso", image))
    )


# Re-derive only for an intended change of the ISO writer (or of pycdlib).
GOLDEN_SHA256 = "b6045bcbbf9b7c0c20da20aaeadc5fdea0322cd90c9a34827cc5dff36f9259b7"


def test_image_bytes_match_the_golden_hash(image: bytes) -> None:
    assert hashlib.sha256(image).hexdigest() == GOLDEN_SHA256
