"""Debian's real cloud-init reads our drives.

Each image is built, unpacked with an independent tool (xorriso for ISO9660,
mcopy for vfat; no mount, no root) into a seed directory, and handed to
cloud-init's own datasource classes -- ``DataSourceConfigDrive`` (which reads
through ``ConfigDriveReader.read_v2``) and ``DataSourceNoCloud`` -- in a
separate process under the system python. What they report must be what the
server view registered.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
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
from tests.support.configdrive_tools import extract_iso, extract_vfat, write_image
from tests.support.guest import require_cloudinit, run_guest_python

from cloudseed.configdrive.build import DriveFormat, build_image
from cloudseed.model import ServerView
from cloudseed.render.options import RenderOptions

pytestmark = pytest.mark.conformance

# argv: cloud_dir, datasource ("ConfigDrive" | "NoCloud"), known MACs as JSON.
GUEST_SCRIPT = r"""
import base64, json, sys
from cloudinit import distros, helpers, settings
from cloudinit.net import network_state
from cloudinit.sources import DataSourceConfigDrive, DataSourceNoCloud
from cloudinit.sources.helpers import openstack

cloud_dir, kind, macs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
paths = helpers.Paths({"cloud_dir": cloud_dir, "run_dir": cloud_dir + "/run"})
distro = distros.fetch("debian")("debian", {}, paths)
if kind == "ConfigDrive":
    ds = DataSourceConfigDrive.DataSourceConfigDrive(settings.CFG_BUILTIN, distro, paths)
else:
    ds = DataSourceNoCloud.DataSourceNoCloud(settings.CFG_BUILTIN, distro, paths)
found = ds.get_data()
out = {"found": found}
if found:
    if kind == "ConfigDrive":
        net = openstack.convert_net_json(ds.network_json, known_macs=macs)
        out["meta"] = ds.metadata.get("meta")
        out["files"] = {k: base64.b64encode(v).decode() for k, v in ds.files.items()}
        out["ec2_instance_id"] = (ds.ec2_metadata or {}).get("instance-id")
        out["vendordata2"] = ds.vendordata2_raw
        out["random_seed"] = ds.metadata.get("random_seed") and len(ds.metadata["random_seed"])
    else:
        net = ds.network_config
    state = network_state.parse_net_config_data(net) if net else None
    out.update(
        instance_id=ds.get_instance_id(),
        hostname=ds.get_hostname(fqdn=True).hostname,
        keys=ds.get_public_ssh_keys(),
        availability_zone=ds.availability_zone,
        launch_index=ds.launch_index,
        addresses={k: ds.metadata.get(k) for k in ("local-ipv4", "local-ipv6", "public-ipv4")},
        userdata=base64.b64encode(ds.userdata_raw or b"").decode(),
        # NoCloud keeps the file's bytes, ConfigDrive the JSON string.
        vendordata=(
            ds.vendordata_raw.decode()
            if isinstance(ds.vendordata_raw, bytes) else ds.vendordata_raw
        ),
        interfaces=list(state.iter_interfaces()) if state else [],
    )
print(json.dumps(out, default=str))
"""

DRIVES: dict[str, tuple[DriveFormat, str, str]] = {
    # name: (format, datasource, seed sub-directory cloud-init looks in)
    "iso9660": ("iso9660", "ConfigDrive", "config_drive"),
    "vfat": ("vfat", "ConfigDrive", "config_drive"),
    "nocloud": ("nocloud", "NoCloud", "nocloud"),
}


def _read_as_guest(
    view: ServerView, options: RenderOptions, drive: str, tmp_path: Path
) -> dict[str, Any]:
    require_cloudinit()
    fmt, datasource, seed_dir = DRIVES[drive]
    image = write_image(tmp_path, "drive.img", build_image(view, options, fmt, SEED))
    target = tmp_path / "cloud" / "seed" / seed_dir
    if fmt == "vfat":
        extract_vfat(image, target)
    else:
        extract_iso(image, target)
    macs = {pv.port.mac_address: f"eth{n}" for n, pv in enumerate(view.ports)}
    result: dict[str, Any] = run_guest_python(
        GUEST_SCRIPT, str(tmp_path / "cloud"), datasource, json.dumps(macs)
    )
    return result


def _network_summary(interfaces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a guest would configure per MAC, in a form both config versions share."""
    summary = {}
    for interface in interfaces:
        subnets = interface.get("subnets") or []
        addresses, gateways, routes = set(), set(), set()
        for subnet in subnets:
            if subnet.get("type", "").startswith("static"):
                addresses.add(f"{subnet['address']}/{subnet['prefix']}")
            if subnet.get("gateway"):
                gateways.add(subnet["gateway"])
            for route in subnet.get("routes") or []:
                if route["prefix"] == 0:
                    gateways.add(route["gateway"])
                else:
                    routes.add(f"{route['network']}/{route['prefix']} via {route['gateway']}")
        types = {subnet.get("type") for subnet in subnets}
        summary[interface["mac_address"]] = {
            "dhcp4": bool(types & {"dhcp4", "dhcp"}),
            "slaac": "ipv6_slaac" in types or bool(interface.get("accept-ra")),
            "addresses": sorted(addresses),
            "gateways": sorted(gateways - {None}),
            "routes": sorted(routes),
            "mtu": interface.get("mtu"),
        }
    return summary


EXPECTED_NETWORK = {
    "fa:16:3e:00:00:01": {
        "dhcp4": True,
        "slaac": True,
        "addresses": [],
        # The config drive names the SLAAC router; NoCloud leaves it to the RA.
        "gateways": None,
        "routes": [],
        "mtu": None,
    },
    "fa:16:3e:00:00:02": {
        "dhcp4": False,
        "slaac": False,
        "addresses": ["192.168.50.10/24", "2001:db8:50::10/64"],
        "gateways": ["192.168.50.1", "2001:db8:50::1"],
        "routes": ["172.16.0.0/12 via 192.168.50.254"],
        "mtu": 9000,
    },
}


@pytest.mark.parametrize("drive", sorted(DRIVES))
def test_cloudinit_reads_identity_keys_and_user_data(drive: str, tmp_path: Path) -> None:
    seen = _read_as_guest(VIEW, OPTIONS, drive, tmp_path)
    assert seen["found"] is True
    assert seen["instance_id"] == SERVER_ID
    assert seen["hostname"] == "web-1.novalocal"
    assert seen["keys"] == [SSH_KEY]
    assert base64.b64decode(seen["userdata"]) == USER_DATA
    assert seen["vendordata"] == VENDOR_CLOUD_CONFIG
    # Every format carries the availability zone cloud-init reads.
    assert seen["availability_zone"] == "nova"
    if drive == "nocloud":
        # cloud-init 22.4's ConfigDrive leaves launch-index out; NoCloud reads it.
        assert seen["launch_index"] == 0
        assert seen["addresses"] == {"local-ipv4": "10.0.0.5", "local-ipv6": "2001:db8:10::5",
                                     "public-ipv4": "203.0.113.9"}


@pytest.mark.parametrize("drive", ["iso9660", "vfat"])
def test_config_drive_gives_meta_files_ec2_and_seed(drive: str, tmp_path: Path) -> None:
    seen = _read_as_guest(VIEW, OPTIONS, drive, tmp_path)
    assert seen["meta"] == {"role": "web", "tier": "front"}
    assert {k: base64.b64decode(v) for k, v in seen["files"].items()} == {
        "/etc/motd": b"welcome\n",
        "/etc/app.conf": b"\x00binary\xff",
    }
    assert seen["ec2_instance_id"] == "i-00000007"
    assert seen["random_seed"] == 512  # cloud-init decoded our base64
    # vendor_data2.json holds the static data under "static", which has no
    # top-level "cloud-init" key: Nova's layout, read the same way.
    assert seen["vendordata2"] is None


@pytest.mark.parametrize("drive", sorted(DRIVES))
def test_cloudinit_configures_the_registered_network(drive: str, tmp_path: Path) -> None:
    summary = _network_summary(_read_as_guest(VIEW, OPTIONS, drive, tmp_path)["interfaces"])
    assert set(summary) == set(EXPECTED_NETWORK)
    for mac, expected in EXPECTED_NETWORK.items():
        for key, value in expected.items():
            if value is not None or key == "mtu":
                assert summary[mac][key] == value, (mac, key)


@pytest.mark.parametrize("drive", sorted(DRIVES))
def test_server_without_ports_or_user_data_still_boots(drive: str, tmp_path: Path) -> None:
    seen = _read_as_guest(EMPTY_VIEW, EMPTY_OPTIONS, drive, tmp_path)
    assert seen["found"] is True
    assert seen["instance_id"] == EMPTY_VIEW.server.id
    assert seen["hostname"] == "bare.novalocal"
    assert seen["keys"] == []
    assert seen["interfaces"] == []
    userdata = base64.b64decode(seen["userdata"])
    assert userdata in (b"", b"#cloud-config\n{}\n")
