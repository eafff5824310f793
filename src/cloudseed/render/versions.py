"""The since-table: every metadata version we answer, and which version
introduced each EC2 key, OpenStack file and ``meta_data.json`` field.

One table instead of Nova's version ``if``s: a renderer asks ``ec2_has(key,
version)`` or ``openstack_has(name, version)`` and never compares dates.

EC2 versions are Nova's nine (``1.0`` … ``2009-04-04``) plus the three dated
versions cloud-init's Ec2 datasource probes before falling back to
``2009-04-04`` (``2016-09-02``, ``2018-09-24``, ``2021-03-23``; anchors §10.2).
``latest`` is our newest, ``2021-03-23`` -- NOT Nova's ``2009-04-04`` -- so
``/latest/meta-data/`` also shows ``mac`` and ``network/interfaces/macs/``,
which is what EC2-style guests expect of ``latest``.

OpenStack versions are Nova's (anchors §1.2); ``latest`` is the newest
(``2025-04-04``). The ``/openstack`` listing hides versions dated after
"today", but every version answers when asked for by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from types import MappingProxyType

LATEST = "latest"

EC2_VERSIONS: tuple[str, ...] = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    # Beyond Nova: the versions cloud-init tries first (newest first).
    "2016-09-02",
    "2018-09-24",
    "2021-03-23",
)
EC2_NEWEST = EC2_VERSIONS[-1]

FOLSOM = "2012-08-10"
GRIZZLY = "2013-04-04"
HAVANA = "2013-10-17"
LIBERTY = "2015-10-15"
NEWTON_ONE = "2016-06-30"
NEWTON_TWO = "2016-10-06"
OCATA = "2017-02-22"
ROCKY = "2018-08-27"
VICTORIA = "2020-10-14"
EPOXY = "2025-04-04"

OPENSTACK_VERSIONS: tuple[str, ...] = (
    FOLSOM,
    GRIZZLY,
    HAVANA,
    LIBERTY,
    NEWTON_ONE,
    NEWTON_TWO,
    OCATA,
    ROCKY,
    VICTORIA,
    EPOXY,
)
OPENSTACK_NEWEST = OPENSTACK_VERSIONS[-1]

# Top-level names under ``<ec2 version>/meta-data/`` (a name stands for its
# whole subtree), and ``user-data`` beside it.
EC2_SINCE: Mapping[str, str] = MappingProxyType(
    {
        "user-data": "1.0",
        "ami-id": "1.0",
        "ami-launch-index": "1.0",
        "ami-manifest-path": "1.0",
        "hostname": "1.0",
        "instance-id": "1.0",
        "local-ipv4": "1.0",
        "public-keys": "1.0",
        "reservation-id": "1.0",
        "security-groups": "1.0",
        "local-hostname": "2007-01-19",
        "public-hostname": "2007-01-19",
        "public-ipv4": "2007-01-19",
        "instance-type": "2007-08-29",
        "block-device-mapping": "2007-12-15",
        "kernel-id": "2007-12-15",
        "ramdisk-id": "2007-12-15",
        "placement": "2008-02-01",
        "instance-action": "2008-09-01",
        # Beyond Nova: AWS keys for the newer dated versions only, so the
        # Nova versions stay byte-compatible with Nova.
        "mac": "2016-09-02",
        "network": "2016-09-02",
        # AWS's instance tags in metadata (an opt-in per server).
        "tags": "2021-03-23",
    }
)

# Files under ``openstack/<version>/``, in the order Nova lists them.
OPENSTACK_FILE_SINCE: Mapping[str, str] = MappingProxyType(
    {
        "meta_data.json": FOLSOM,
        "user_data": FOLSOM,
        "password": GRIZZLY,
        "vendor_data.json": HAVANA,
        "network_data.json": LIBERTY,
        "vendor_data2.json": NEWTON_TWO,
    }
)

# Fields of ``meta_data.json`` (and of its ``devices[]`` entries) that not
# every version has.
OPENSTACK_FIELD_SINCE: Mapping[str, str] = MappingProxyType(
    {
        "random_seed": GRIZZLY,
        "project_id": LIBERTY,
        "devices": NEWTON_ONE,
        "devices.vlan": OCATA,
        "devices.vf_trusted": ROCKY,
        "dedicated_cpus": VICTORIA,
    }
)

_EC2_INDEX = {version: index for index, version in enumerate(EC2_VERSIONS)}
_OPENSTACK_INDEX = {version: index for index, version in enumerate(OPENSTACK_VERSIONS)}


def resolve_ec2(version: str) -> str | None:
    """The concrete EC2 version a path segment names, or None if unknown."""
    if version == LATEST:
        return EC2_NEWEST
    return version if version in _EC2_INDEX else None


def resolve_openstack(version: str) -> str | None:
    """The concrete OpenStack version a path segment names, or None if unknown."""
    if version == LATEST:
        return OPENSTACK_NEWEST
    return version if version in _OPENSTACK_INDEX else None


def ec2_has(name: str, version: str) -> bool:
    """Whether EC2 ``version`` (concrete) serves the meta-data key ``name``."""
    return _EC2_INDEX[version] >= _EC2_INDEX[EC2_SINCE[name]]


# ``<version>/dynamic/instance-identity/``: AWS's signed identity, only in the
# versions Nova does not serve, so Nova's stay byte-compatible.
EC2_DYNAMIC_SINCE = "2016-09-02"


def ec2_has_dynamic(version: str) -> bool:
    """Whether EC2 ``version`` (concrete) has the ``dynamic`` tree."""
    return _EC2_INDEX[version] >= _EC2_INDEX[EC2_DYNAMIC_SINCE]


def openstack_has(name: str, version: str) -> bool:
    """Whether OpenStack ``version`` (concrete) has file or field ``name``."""
    since = OPENSTACK_FILE_SINCE.get(name) or OPENSTACK_FIELD_SINCE[name]
    return _OPENSTACK_INDEX[version] >= _OPENSTACK_INDEX[since]


def listed_openstack_versions(today: date) -> tuple[str, ...]:
    """What ``GET /openstack`` shows: versions dated up to ``today``, then latest.

    Nova hides future versions so that a cloud-init that picks "the newest
    listed" never picks one its operator has not reached yet.
    """
    cutoff = today.isoformat()
    return (*(v for v in OPENSTACK_VERSIONS if v <= cutoff), LATEST)
