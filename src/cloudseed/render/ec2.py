"""The EC2 tree: ``<version>/meta-data/…`` and ``<version>/user-data``.

``build_metadata`` gives the meta-data of one version as a nested dict; the
text tree is that dict flattened (``leaves``), and the config drive writes
it as ``ec2/<version>/meta-data.json`` (``metadata_json``).

Keys and formats are Nova's ``get_ec2_metadata`` (anchors §1.2), version by
version (see ``versions.EC2_SINCE``). Choices where Nova's data has no
counterpart here:

- ``ami-id`` is ``ami-`` plus the first 8 hex digits of the image id when it
  is a UUID (so an operator can match it against the image list), else of
  the SHA-256 of the image id; ``ami-00000000`` without an image.
- ``security-groups`` is ``default``: there are no security groups here.
- ``block-device-mapping`` is what Nova's libvirt driver names for the
  flavor's disks: ``ami`` = ``vda``, ``root`` = ``/dev/vda``, then
  ``ephemeral0`` = ``/dev/vdb`` when the flavor has an ephemeral disk and
  ``swap`` on the next letter when it has swap; ``kernel-id`` and
  ``ramdisk-id`` are never set.
- ``local-ipv4`` without an IPv4 address is empty (Nova falls back to the
  request's source address, which a pure renderer does not have).
- From ``2016-09-02`` on, AWS's ``mac`` (first port) and
  ``network/interfaces/macs/<mac>/…`` per port; a per-MAC key whose value
  would be empty (no floating IP, no IPv6) is left out, as AWS does.
- ``dynamic/instance-identity/document`` (from ``2016-09-02``, when the
  deployment has an identity key): AWS's fields from the inventory --
  ``accountId`` is the project, ``pendingTime`` the server's creation,
  ``region`` the deployment's; ``architecture`` is ``x86_64`` (the inventory
  does not record it); the codes and kernel/ramdisk ids AWS may leave null
  are null. Pretty-printed as AWS prints it. Its signatures sit beside it.
- ``tags/instance/<key>`` (AWS's opt-in, from ``2021-03-23``): the server's
  metadata items, only when its IMDS option ``tags`` is on. Keys AWS could
  not serve there are left out (``imds_tag_key``); with no key left, there
  is no ``tags`` directory.
"""

from __future__ import annotations

import hashlib
import json
import re

from cloudseed.model import PortView, Server, ServerView
from cloudseed.render.options import RenderOptions
from cloudseed.render.versions import ec2_has, ec2_has_dynamic

# A nested meta-data dict: leaves are str, int or list[str].
Ec2Value = str | int | list[str] | dict[str, "Ec2Value"]

_UUID_HEX = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}")
_ROOT_DEVICE = "/dev/vda"
# AWS: tag keys in instance metadata may only use letters, digits and
# ``+ - = . , _ : @`` (no spaces, no ``/``), and may not be ``.``, ``..`` or
# ``_index``; a tag key is at most 128 characters.
_IMDS_TAG_KEY = re.compile(r"[A-Za-z0-9+\-=.,_:@]{1,128}")
_IMDS_TAG_KEYS_REFUSED = frozenset({".", "..", "_index"})


def imds_tag_key(key: str) -> bool:
    """Whether AWS would show a tag with this key in instance metadata."""
    return _IMDS_TAG_KEY.fullmatch(key) is not None and key not in _IMDS_TAG_KEYS_REFUSED


def fqdn(hostname: str, options: RenderOptions) -> str:
    """Nova's ``_get_hostname``: ``<hostname>.<dhcp_domain>``, or bare."""
    return f"{hostname}.{options.dhcp_domain}" if options.dhcp_domain else hostname


def instance_id(ec2_id: int) -> str:
    return f"i-{ec2_id:08x}"


# AWS's identity document format version.
IDENTITY_DOCUMENT_VERSION = "2017-09-30"
IDENTITY_DIR = "dynamic/instance-identity"


def identity_document(view: ServerView, options: RenderOptions) -> bytes:
    """AWS's ``dynamic/instance-identity/document`` for this server."""
    server = view.server
    document = {
        "accountId": server.project_id,
        "architecture": "x86_64",
        "availabilityZone": server.availability_zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": ami_id(server.image_id),
        "instanceId": instance_id(server.ec2_id),
        "instanceType": server.flavor_name,
        "kernelId": None,
        "pendingTime": server.created_at,
        "privateIp": view.first_ipv4,
        "ramdiskId": None,
        "region": options.region,
        "version": IDENTITY_DOCUMENT_VERSION,
    }
    return json.dumps(document, indent=2, separators=(",", " : ")).encode("utf-8")


def identity_files(view: ServerView, options: RenderOptions, version: str) -> dict[str, bytes]:
    """``dynamic/instance-identity/*`` by path, or nothing without a signer."""
    signer = options.identity_signer
    if signer is None or not ec2_has_dynamic(version):
        return {}
    document = identity_document(view, options)
    files = {f"{IDENTITY_DIR}/document": document}
    for name, body in signer.sign_document(document).items():
        files[f"{IDENTITY_DIR}/{name}"] = body
    return files


def ami_id(image_id: str) -> str:
    if not image_id:
        return "ami-00000000"
    lowered = image_id.lower()
    if _UUID_HEX.match(lowered):
        return "ami-" + lowered[:8]
    return "ami-" + hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:8]


def build_metadata(view: ServerView, version: str, options: RenderOptions) -> dict[str, Ec2Value]:
    """The meta-data of concrete EC2 ``version`` as a nested dict."""
    return select(all_metadata(view, options), version)


def select(data: dict[str, Ec2Value], version: str) -> dict[str, Ec2Value]:
    """The top-level keys of ``data`` that concrete ``version`` has."""
    return {key: value for key, value in data.items() if ec2_has(key, version)}


def all_metadata(view: ServerView, options: RenderOptions) -> dict[str, Ec2Value]:
    """Every meta-data key this server has, whatever the version."""
    server = view.server
    hostname = fqdn(server.hostname, options)
    data: dict[str, Ec2Value] = {
        "ami-id": ami_id(server.image_id),
        "ami-launch-index": server.launch_index,
        # Nova's literal: there are no image manifests.
        "ami-manifest-path": "FIXME",
        "instance-id": instance_id(server.ec2_id),
        "hostname": hostname,
        "local-ipv4": view.first_ipv4 or "",
        "reservation-id": server.reservation_id,
        "security-groups": ["default"],
    }
    if view.keypair is not None:
        # EC2 shows one key, as index 0; its listing line is ``0=<name>``.
        # Here in the order, as Nova's dict has it (the drive's JSON shows it).
        data["public-keys"] = {"0": {"openssh-key": view.keypair.public_key}}
    data |= {
        "local-hostname": hostname,
        "public-hostname": hostname,
        "public-ipv4": view.first_floating_ip or "",
        "instance-type": server.flavor_name,
        "block-device-mapping": block_device_mapping(server),
        "placement": {"availability-zone": server.availability_zone},
        "instance-action": "none",
    }
    if server.imds.tags:
        tags: dict[str, Ec2Value] = {
            key: value for key, value in sorted(server.metadata.items()) if imds_tag_key(key)
        }
        if tags:
            data["tags"] = {"instance": tags}
    if view.ports:
        data["mac"] = view.ports[0].port.mac_address
        data["network"] = {
            "interfaces": {
                "macs": {
                    pv.port.mac_address: _interface(pv, number, hostname)
                    for number, pv in enumerate(view.ports)
                }
            }
        }
    return data


def block_device_mapping(server: Server) -> dict[str, Ec2Value]:
    """Nova's ``instance_block_mapping`` for a libvirt guest booted from an
    image: the flavor's ephemeral disk and swap take the letters after the
    root disk, in that order."""
    mapping: dict[str, Ec2Value] = {"ami": _ROOT_DEVICE.removeprefix("/dev/"), "root": _ROOT_DEVICE}
    letters = iter("bcdefg")
    if server.ephemeral_gb > 0:
        mapping["ephemeral0"] = f"/dev/vd{next(letters)}"
    if server.swap_mb > 0:
        mapping["swap"] = f"/dev/vd{next(letters)}"
    return mapping


def _interface(port_view: PortView, number: int, hostname: str) -> dict[str, Ec2Value]:
    port = port_view.port
    v4 = [f.ip_address for f in port.fixed_ips if ":" not in f.ip_address]
    v6 = [f.ip_address for f in port.fixed_ips if ":" in f.ip_address]
    v4_cidrs = [s.cidr for s in port_view.subnets if s.ip_version == 4]
    v6_cidrs = [s.cidr for s in port_view.subnets if s.ip_version == 6]
    candidates: dict[str, Ec2Value] = {
        "device-number": str(number),
        "local-hostname": hostname,
        "local-ipv4s": v4,
        "mac": port.mac_address,
        "public-ipv4s": [port.floating_ip] if port.floating_ip else [],
        "subnet-ipv4-cidr-block": v4_cidrs[0] if v4_cidrs else "",
        "subnet-ipv6-cidr-blocks": list(dict.fromkeys(v6_cidrs)),
        "ipv6s": v6,
    }
    return {key: value for key, value in candidates.items() if value}


def leaves(data: dict[str, Ec2Value], prefix: str = "") -> dict[str, bytes]:
    """Flatten a meta-data dict into ``prefix/<key path>`` → text bytes
    (Nova's ec2_md_print for leaves: lists one item per line)."""
    flat: dict[str, bytes] = {}
    for key, value in data.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(leaves(value, path))
        elif isinstance(value, list):
            flat[path] = "\n".join(value).encode("utf-8")
        else:
            flat[path] = str(value).encode("utf-8")
    return flat


def listing_labels(view: ServerView) -> dict[str, str]:
    """Listing lines that are not plain names, by path relative to the
    version directory: the key pair's ``0=<name>``."""
    if view.keypair is None:
        return {}
    return {"meta-data/public-keys/0": f"0={view.keypair.name}"}


def metadata_json(view: ServerView, version: str, options: RenderOptions) -> bytes:
    """``ec2/<version>/meta-data.json`` for the config drive (Nova's format)."""
    return json.dumps(build_metadata(view, version, options)).encode("ascii")
