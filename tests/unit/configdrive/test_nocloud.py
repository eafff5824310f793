from __future__ import annotations

import json

import yaml
from tests.support.configdrive_sample import (
    EMPTY_OPTIONS,
    EMPTY_VIEW,
    OPTIONS,
    SEED,
    SERVER_ID,
    SSH_KEY,
    USER_DATA,
    VENDOR_CLOUD_CONFIG,
    VIEW,
)

from cloudseed.configdrive.layout import drive_files
from cloudseed.configdrive.nocloud import EMPTY_USER_DATA, nocloud_files
from cloudseed.render.options import RenderOptions


def test_seed_has_identity_keys_user_data_network_and_vendor_data() -> None:
    files = nocloud_files(drive_files(VIEW, OPTIONS, SEED))
    assert set(files) == {"meta-data", "user-data", "network-config", "vendor-data"}
    assert yaml.safe_load(files["meta-data"]) == {
        "instance-id": SERVER_ID,
        "local-hostname": "web-1.novalocal",
        "availability-zone": "nova",
        "launch-index": 0,
        "local-ipv4": "10.0.0.5",
        "local-ipv6": "2001:db8:10::5",
        "public-ipv4": "203.0.113.9",
        "public-keys": [SSH_KEY],
    }
    assert files["user-data"] == USER_DATA
    assert files["vendor-data"] == VENDOR_CLOUD_CONFIG.encode()
    assert yaml.safe_load(files["network-config"])["version"] == 2


def test_server_without_user_data_gets_an_empty_cloud_config() -> None:
    files = nocloud_files(drive_files(EMPTY_VIEW, EMPTY_OPTIONS, SEED))
    assert files["user-data"] == EMPTY_USER_DATA
    meta = yaml.safe_load(files["meta-data"])
    assert "public-keys" not in meta
    # No port: no address keys rather than empty ones.
    assert not {"local-ipv4", "local-ipv6", "public-ipv4"} & set(meta)
    assert "vendor-data" not in files


def test_vendor_data_mapping_becomes_cloud_config() -> None:
    options = RenderOptions(
        today=OPTIONS.today, static_vendordata={"cloud-init": {"packages": ["jq"]}}
    )
    files = nocloud_files(drive_files(VIEW, options, SEED))
    assert files["vendor-data"].startswith(b"#cloud-config\n")
    assert yaml.safe_load(files["vendor-data"]) == {"packages": ["jq"]}


def test_vendor_data_without_cloud_init_key_is_left_out() -> None:
    options = RenderOptions(today=OPTIONS.today, static_vendordata={"region": "x"})
    assert "vendor-data" not in nocloud_files(drive_files(VIEW, options, SEED))


def test_network_config_follows_the_rendered_network_data() -> None:
    drive = drive_files(VIEW, OPTIONS, SEED)
    network = yaml.safe_load(nocloud_files(drive)["network-config"])
    links = json.loads(drive["openstack/latest/network_data.json"])["links"]
    assert {e["match"]["macaddress"] for e in network["ethernets"].values()} == {
        link["ethernet_mac_address"] for link in links
    }
