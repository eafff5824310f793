"""The renderer's documents, read by Debian's real cloud-init.

cloud-init is the consumer we must satisfy, so it is the oracle: our
network_data.json goes through its ``convert_net_json``, and the whole
OpenStack tree through its config-drive reader (``read_v2``), the same code
that reads the HTTP service.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.guest import require_cloudinit, run_guest_python
from tests.support.samples import BARE, BARE_OPTIONS, RICH, RICH_OPTIONS, SSH_KEY

from cloudseed.model import ServerView
from cloudseed.render import RenderOptions, ec2_metadata_json, render_tree

pytestmark = pytest.mark.conformance

CONVERT_NET_JSON = """
import json, sys
from cloudinit.sources.helpers import openstack
network_data = json.loads(sys.argv[1])
known_macs = json.loads(sys.argv[2])
print(json.dumps(openstack.convert_net_json(network_data, known_macs=known_macs)))
"""

READ_CONFIG_DRIVE = """
import base64, json, sys
from cloudinit.sources.helpers import openstack
result = openstack.ConfigDriveReader(sys.argv[1]).read_v2()
print(json.dumps({
    "version": result["version"],
    "metadata": result["metadata"],
    "userdata": result.get("userdata").decode() if result.get("userdata") else None,
    "vendordata": result.get("vendordata"),
    "networkdata": result.get("networkdata"),
    "files": {k: v.decode() for k, v in result.get("files", {}).items()},
    "ec2-metadata": result.get("ec2-metadata"),
}, default=str))
"""

KNOWN_MACS = {"fa:16:3e:00:00:01": "eth0", "fa:16:3e:00:00:02": "eth1"}


@pytest.fixture(autouse=True)
def _cloudinit() -> None:
    require_cloudinit()


def test_cloudinit_converts_network_data_to_the_intended_config() -> None:
    body = render_tree(RICH, RICH_OPTIONS).lookup("openstack/2018-08-27/network_data.json")
    assert body is not None
    config = run_guest_python(CONVERT_NET_JSON, body.body.decode(), json.dumps(KNOWN_MACS))
    assert config == {
        "version": 1,
        "config": [
            {
                "name": "eth0",
                "type": "physical",
                "mac_address": "fa:16:3e:00:00:01",
                "mtu": None,
                "subnets": [{"type": "dhcp4"}],
            },
            {
                "name": "eth1",
                "type": "physical",
                "mac_address": "fa:16:3e:00:00:02",
                "mtu": 9000,
                "accept-ra": False,
                "subnets": [
                    {
                        "type": "static",
                        "address": "192.168.50.10",
                        "netmask": "255.255.255.0",
                        "ipv4": True,
                        "routes": [
                            {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.50.1"},
                            {
                                "network": "172.16.0.0",
                                "netmask": "255.255.0.0",
                                "gateway": "192.168.50.254",
                            },
                        ],
                    },
                    {
                        "type": "static6",
                        "address": "2001:db8:50::10",
                        "netmask": "ffff:ffff:ffff:ffff::",
                        "ipv6": True,
                        "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:50::1"}],
                    },
                ],
            },
            {"type": "nameserver", "address": "10.0.0.2"},
            {"type": "nameserver", "address": "192.168.50.2"},
            {"type": "nameserver", "address": "2001:db8:50::53"},
        ],
    }


def test_cloudinit_converts_empty_network_data_to_empty_config() -> None:
    body = render_tree(BARE, BARE_OPTIONS).lookup("openstack/latest/network_data.json")
    assert body is not None
    config = run_guest_python(CONVERT_NET_JSON, body.body.decode(), "{}")
    assert config == {"version": 1, "config": []}


def _write_drive(root: Path, view: ServerView, options: RenderOptions) -> None:
    """Lay the OpenStack leaves out as a config drive (the config drive
    engineer's job; this is only enough for cloud-init to read)."""
    tree = render_tree(view, options)
    for path, document in tree.leaves():
        if path.startswith("openstack/"):
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            # A drive has no per-response seed; any base64 will do here.
            target.write_bytes(document.with_seed(b"c2VlZA=="))
    ec2_dir = root / "ec2" / "latest"
    ec2_dir.mkdir(parents=True)
    (ec2_dir / "meta-data.json").write_bytes(ec2_metadata_json(view, "2021-03-23", options))


def test_cloudinit_reads_the_whole_openstack_tree(tmp_path: Path) -> None:
    _write_drive(tmp_path, RICH, RICH_OPTIONS)
    result = run_guest_python(READ_CONFIG_DRIVE, str(tmp_path))
    assert result["version"] == 2  # the reader's format: v2 config drive
    metadata = result["metadata"]
    assert metadata["uuid"] == RICH.server.id
    assert metadata["hostname"] == "web-1.novalocal"
    assert metadata["public_keys"] == {"ops": SSH_KEY}
    # cloud-init decodes the seed (and fails the datasource on bad base64).
    assert metadata["random_seed"] == str(b"seed")
    assert result["userdata"] == "#cloud-config\nhostname: web-1\n"
    assert result["vendordata"] == {"cloud-init": "#cloud-config\npackages: [htop]\n"}
    assert result["files"] == {
        "/etc/motd": "hello from cloudseed\n",
        "/root/notes.txt": "second file\n",
    }
    assert result["networkdata"]["links"][0]["id"] == "tapa1b2c3d4-e5"
    assert result["ec2-metadata"]["instance-id"] == "i-0000002a"


def test_cloudinit_reads_a_bare_servers_tree(tmp_path: Path) -> None:
    _write_drive(tmp_path, BARE, BARE_OPTIONS)
    result = run_guest_python(READ_CONFIG_DRIVE, str(tmp_path))
    assert result["metadata"]["uuid"] == BARE.server.id
    assert result["userdata"] is None
    assert result["networkdata"] == {"links": [], "networks": [], "services": []}
