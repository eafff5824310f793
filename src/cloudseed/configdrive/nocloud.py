"""A NoCloud seed (label ``cidata``) from the same documents as the config drive.

cloud-init's NoCloud datasource reads four files from a volume labelled
``cidata`` (anchors §9): ``meta-data`` and ``user-data`` (both required),
``network-config`` and ``vendor-data`` (optional). Each is derived from the
config drive's ``openstack/latest`` documents, so a guest booted from either
drive gets the same identity, keys, user-data and network:

- ``meta-data``: the keys cloud-init's NoCloud (its ``DataSource`` base)
  reads — ``instance-id`` (the server UUID, as on the config drive),
  ``local-hostname``, ``availability-zone``, ``launch-index`` and
  ``public-keys`` — and the addresses the EC2 meta-data gives
  (``local-ipv4``, ``local-ipv6``, ``public-ipv4``), which cloud-init keeps in
  ``ds.meta_data`` for templates; what NoCloud cannot carry is listed in
  docs/DECISIONS.md;
- ``user-data``: the server's user-data, else an empty ``#cloud-config``;
- ``network-config``: ``network_data.json`` as version 2 (``netplan``);
- ``vendor-data``: the ``cloud-init`` key of the static vendor data, when set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from cloudseed.configdrive.filemap import FileMap
from cloudseed.configdrive.netplan import network_config

NOCLOUD_LABEL = "cidata"
META_DATA = "meta-data"
USER_DATA = "user-data"
NETWORK_CONFIG = "network-config"
VENDOR_DATA = "vendor-data"
# NoCloud requires user-data; this is the smallest one cloud-init accepts as
# "nothing to do".
EMPTY_USER_DATA = b"#cloud-config\n{}\n"
# The key cloud-init reads in OpenStack vendor data (anchors §1.5, §10.1).
VENDOR_CLOUD_INIT_KEY = "cloud-init"
_SOURCE = "openstack/latest/"
# Every drive has the EC2 meta-data as one JSON (configdrive/layout.py).
_EC2_SOURCE = "ec2/latest/meta-data.json"


def nocloud_files(drive: FileMap) -> dict[str, bytes]:
    """The NoCloud seed's files, from a config drive's file map (``layout``)."""
    meta = json.loads(drive[_SOURCE + "meta_data.json"])
    ec2 = json.loads(drive.get(_EC2_SOURCE, b"{}"))
    files = {
        META_DATA: _yaml(_meta_data(meta, ec2 if isinstance(ec2, dict) else {})),
        USER_DATA: drive.get(_SOURCE + "user_data", EMPTY_USER_DATA),
    }
    network_data = drive.get(_SOURCE + "network_data.json")
    if network_data is not None:
        files[NETWORK_CONFIG] = _yaml(network_config(json.loads(network_data)))
    vendor = drive.get(_SOURCE + "vendor_data.json")
    if vendor is not None:
        vendor_data = _vendor_data(json.loads(vendor))
        if vendor_data is not None:
            files[VENDOR_DATA] = vendor_data
    return files


def _meta_data(meta: Mapping[str, Any], ec2: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"instance-id": meta["uuid"], "local-hostname": meta["hostname"]}
    if meta.get("availability_zone"):
        data["availability-zone"] = meta["availability_zone"]
    if isinstance(meta.get("launch_index"), int):
        # cloud-init filters multi-part user-data by this (Launch-Index headers).
        data["launch-index"] = meta["launch_index"]
    for key, value in (("local-ipv4", ec2.get("local-ipv4")),
                       ("local-ipv6", _first_ipv6(ec2)),
                       ("public-ipv4", ec2.get("public-ipv4"))):
        if value:
            data[key] = value
    keys = meta.get("public_keys") or {}
    if keys:
        data["public-keys"] = [keys[name] for name in sorted(keys)]
    return data


def _first_ipv6(ec2: Mapping[str, Any]) -> str | None:
    """The primary interface's first IPv6 address (EC2 keeps them per MAC)."""
    macs = ec2.get("network", {}).get("interfaces", {}).get("macs", {})
    primary = macs.get(ec2.get("mac")) if isinstance(macs, dict) else None
    addresses = primary.get("ipv6s") if isinstance(primary, dict) else None
    return str(addresses[0]) if isinstance(addresses, list) and addresses else None


def _vendor_data(vendor: object) -> bytes | None:
    """The ``cloud-init`` value as NoCloud vendor-data: text as it is, a
    mapping as cloud-config; anything else is not something NoCloud reads."""
    if not isinstance(vendor, dict) or VENDOR_CLOUD_INIT_KEY not in vendor:
        return None
    value = vendor[VENDOR_CLOUD_INIT_KEY]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        return b"#cloud-config\n" + _yaml(value)
    return None


def _yaml(data: Mapping[str, Any]) -> bytes:
    # Keys in the order built, block style: stable bytes and readable files.
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
    return text.encode("utf-8")
