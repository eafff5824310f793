from __future__ import annotations

import base64
import json

from tests.support.configdrive_sample import EMPTY_OPTIONS, EMPTY_VIEW, OPTIONS, SEED, VIEW

from cloudseed.configdrive.layout import drive_files, is_drive_leaf
from cloudseed.configdrive.seed import random_seed_b64
from cloudseed.render import render_tree
from cloudseed.render.versions import OPENSTACK_VERSIONS

FILES_BY_VERSION = {
    "2012-08-10": {"meta_data.json", "user_data"},
    "2013-04-04": {"meta_data.json", "user_data"},
    "2013-10-17": {"meta_data.json", "user_data", "vendor_data.json"},
    "2015-10-15": {"meta_data.json", "user_data", "vendor_data.json", "network_data.json"},
    "2016-06-30": {"meta_data.json", "user_data", "vendor_data.json", "network_data.json"},
}
ALL_FILES = {
    "meta_data.json",
    "user_data",
    "vendor_data.json",
    "network_data.json",
    "vendor_data2.json",
}


def _names(files: dict[str, bytes], directory: str) -> set[str]:
    return {p.rpartition("/")[2] for p in files if p.rpartition("/")[0] == directory}


def test_every_openstack_version_and_latest_has_the_files_it_introduced() -> None:
    files = drive_files(VIEW, OPTIONS, SEED)
    for version in (*OPENSTACK_VERSIONS, "latest"):
        assert _names(files, f"openstack/{version}") == FILES_BY_VERSION.get(version, ALL_FILES)


def test_password_is_never_on_the_drive() -> None:
    assert not any(p.endswith("/password") for p in drive_files(VIEW, OPTIONS, SEED))
    assert not is_drive_leaf("openstack/latest/password")


def test_ec2_has_2009_04_04_and_latest_only() -> None:
    files = drive_files(VIEW, OPTIONS, SEED)
    ec2 = sorted(p for p in files if p.startswith("ec2/"))
    assert ec2 == [
        "ec2/2009-04-04/meta-data.json",
        "ec2/2009-04-04/user-data",
        "ec2/latest/meta-data.json",
        "ec2/latest/user-data",
    ]
    assert json.loads(files["ec2/2009-04-04/meta-data.json"])["instance-id"] == "i-00000007"
    assert json.loads(files["ec2/latest/meta-data.json"])["mac"] == "fa:16:3e:00:00:01"


def test_injected_files_are_under_content() -> None:
    files = drive_files(VIEW, OPTIONS, SEED)
    assert files["openstack/content/0000"] == b"welcome\n"
    assert files["openstack/content/0001"] == b"\x00binary\xff"


def test_files_are_the_bytes_the_api_serves_seed_aside() -> None:
    files = drive_files(VIEW, OPTIONS, SEED)
    seed_b64 = random_seed_b64(SEED)
    for path, document in render_tree(VIEW, OPTIONS).leaves():
        if is_drive_leaf(path):
            assert files[path] == document.with_seed(seed_b64), path


def test_meta_data_carries_the_derived_random_seed() -> None:
    files = drive_files(VIEW, OPTIONS, SEED)
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert base64.b64decode(meta["random_seed"]) == base64.b64decode(random_seed_b64(SEED))
    assert "random_seed" not in json.loads(files["openstack/2012-08-10/meta_data.json"])


def test_server_without_user_data_or_ports_has_no_user_data_files() -> None:
    files = drive_files(EMPTY_VIEW, EMPTY_OPTIONS, SEED)
    assert not any(p.endswith(("/user_data", "/user-data")) for p in files)
    assert "openstack/latest/meta_data.json" in files
    assert not any(p.startswith("openstack/content/") for p in files)
