"""Debian's real cloud-init reads cloudseed's metadata API as a guest.

The API runs in DIRECT mode on loopback and the guest's port holds
127.0.0.1, so cloud-init's own readers, in their own process under the
system python3, reach the API exactly as a guest reaches 169.254.169.254.
The guest script points cloud-init's EC2 crawl (which ``read_v2`` always
aims at 169.254.169.254) at the same base URL -- guest configuration, not a
change to what the server does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.api import RunningApi, api_settings, running_api, store_view
from tests.support.guest import require_cloudinit, run_guest_python
from tests.support.samples import RICH

from cloudseed.store import SqlStore, open_store

pytestmark = pytest.mark.conformance

GUEST_IP = "127.0.0.1"
STATIC_VENDORDATA = {"cloud-init": "#cloud-config\npackages: [htop]\n"}

ENCODE = """
import base64, json, sys
def encode(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    raise TypeError(type(value))
"""

READ_V2 = ENCODE + """
from cloudinit.sources.helpers import ec2, openstack
base = sys.argv[1]
reader = openstack.MetadataReader(base, timeout=5, retries=0)
reader._read_ec2_metadata = lambda: ec2.get_instance_metadata(
    metadata_address=base, timeout=5, retries=0)
print(json.dumps(reader.read_v2(), default=encode))
"""

EC2_CRAWL = ENCODE + """
from cloudinit.sources.helpers import ec2
base = sys.argv[1]
meta = ec2.get_instance_metadata(api_version="latest", metadata_address=base, retries=0)
user = ec2.get_instance_userdata(api_version="latest", metadata_address=base, retries=0)
old = ec2.get_instance_metadata(api_version="2009-04-04", metadata_address=base, retries=0)
print(json.dumps({"meta": meta, "user": user, "old": old}, default=encode))
"""

CONVERT_NET = """
import json, sys
from cloudinit.sources.helpers import openstack
network_data = json.loads(sys.argv[1])
known = json.loads(sys.argv[2])
print(json.dumps(openstack.convert_net_json(network_data, known_macs=known)))
"""


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@pytest.fixture(params=[False, True], ids=["files-off-http", "files-over-http"])
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RunningApi, SqlStore]]:
    require_cloudinit()
    static = tmp_path / "vendor.json"
    static.write_text(json.dumps(STATIC_VENDORDATA))
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store_view(store, RICH, guest_ip=GUEST_IP)
        settings = api_settings(mode="direct", vendordata_static_file=str(static),
                                serve_injected_files=request.param)
        with running_api(store, settings) as running:
            yield running, store


def base_url(api: RunningApi) -> str:
    return f"http://{GUEST_IP}:{api.port}"


def test_read_v2_gets_what_was_registered(api: tuple[RunningApi, SqlStore]) -> None:
    running, _ = api
    result = decode(run_guest_python(READ_V2, base_url(running)))
    assert result["version"] == 2
    meta = result["metadata"]
    assert meta["uuid"] == RICH.server.id
    assert meta["hostname"].startswith("web-1")
    assert meta["name"] == "web-1"
    assert meta["meta"] == {"role": "web", "tier": "frontend"}
    assert meta["public_keys"] == {"ops": RICH.keypair.public_key}  # type: ignore[union-attr]
    # cloud-init decodes the seed itself (BrokenMetadata if it were bad base64).
    assert len(meta["random_seed"]) == 512
    assert result["userdata"] == RICH.server.user_data
    assert result["vendordata"] == STATIC_VENDORDATA
    assert result["vendordata2"] == {"static": STATIC_VENDORDATA}
    # Injected files reach cloud-init over HTTP only when the operator turns that on
    # (as Nova, which puts them on the config drive alone).
    serves_files = running.app.config.serve_injected_files
    expected = {f.path: f.content for f in RICH.server.files} if serves_files else {}
    assert result["files"] == expected
    served = json.loads(running.request("/openstack/2018-08-27/network_data.json").body)
    assert result["networkdata"] == served
    macs = {link["ethernet_mac_address"] for link in served["links"]}
    assert macs == {pv.port.mac_address for pv in RICH.ports}
    assert result["ec2-metadata"]["instance-id"] == "i-0000002a"


def test_ec2_crawl_reads_the_whole_tree(api: tuple[RunningApi, SqlStore]) -> None:
    running, _ = api
    result = decode(run_guest_python(EC2_CRAWL, base_url(running)))
    for meta in (result["meta"], result["old"]):
        assert meta["instance-id"] == "i-0000002a"
        assert meta["local-ipv4"] == GUEST_IP
        assert meta["public-ipv4"] == "203.0.113.10"
        assert meta["placement"] == {"availability-zone": "zone-a"}
        assert meta["public-keys"] == {"ops": RICH.keypair.public_key}  # type: ignore[union-attr]
    assert result["user"] == RICH.server.user_data


def test_convert_net_json_yields_the_expected_network_config(
    api: tuple[RunningApi, SqlStore],
) -> None:
    running, _ = api
    network_data = running.request("/openstack/latest/network_data.json").body.decode()
    known = {"fa:16:3e:00:00:01": "eth0", "fa:16:3e:00:00:02": "eth1"}
    config = run_guest_python(CONVERT_NET, network_data, json.dumps(known))
    assert config["version"] == 1
    physical = {c["mac_address"]: c for c in config["config"] if c["type"] == "physical"}
    assert physical["fa:16:3e:00:00:01"]["name"] == "eth0"
    assert physical["fa:16:3e:00:00:01"]["mtu"] is None or physical["fa:16:3e:00:00:01"]["mtu"]
    assert [s["type"] for s in physical["fa:16:3e:00:00:01"]["subnets"]] == ["dhcp4"]
    static = physical["fa:16:3e:00:00:02"]
    assert static["name"] == "eth1"
    assert static["mtu"] == 9000
    by_type = {s["type"]: s for s in static["subnets"]}
    assert by_type["static"]["address"] == "192.168.50.10"
    assert by_type["static"]["netmask"] == "255.255.255.0"
    assert {"network": "172.16.0.0", "netmask": "255.255.0.0", "gateway": "192.168.50.254"} in [
        {k: r[k] for k in ("network", "netmask", "gateway")} for r in by_type["static"]["routes"]
    ]
    assert by_type["static6"]["address"].startswith("2001:db8:50::10")
    nameservers = [c for c in config["config"] if c["type"] == "nameserver"]
    assert nameservers
