"""The since-table and version resolution."""

from __future__ import annotations

from datetime import date

import pytest

from cloudseed.render import versions


def test_latest_resolves_to_the_newest_versions() -> None:
    assert versions.resolve_ec2("latest") == "2021-03-23"
    assert versions.resolve_openstack("latest") == "2025-04-04"


@pytest.mark.parametrize("version", ["2010-01-01", "", "LATEST", "2009-04-04/"])
def test_unknown_versions_do_not_resolve(version: str) -> None:
    assert versions.resolve_ec2(version) is None
    assert versions.resolve_openstack(version) is None


def test_ec2_versions_are_novas_then_the_ones_cloud_init_probes() -> None:
    assert versions.EC2_VERSIONS[:9] == (
        "1.0",
        "2007-01-19",
        "2007-03-01",
        "2007-08-29",
        "2007-10-10",
        "2007-12-15",
        "2008-02-01",
        "2008-09-01",
        "2009-04-04",
    )
    assert versions.EC2_VERSIONS[9:] == ("2016-09-02", "2018-09-24", "2021-03-23")


def test_versions_are_in_date_order() -> None:
    assert list(versions.EC2_VERSIONS[1:]) == sorted(versions.EC2_VERSIONS[1:])
    assert list(versions.OPENSTACK_VERSIONS) == sorted(versions.OPENSTACK_VERSIONS)


def test_every_since_value_is_a_known_version() -> None:
    assert set(versions.EC2_SINCE.values()) <= set(versions.EC2_VERSIONS)
    assert set(versions.OPENSTACK_FILE_SINCE.values()) <= set(versions.OPENSTACK_VERSIONS)
    assert set(versions.OPENSTACK_FIELD_SINCE.values()) <= set(versions.OPENSTACK_VERSIONS)


@pytest.mark.parametrize(
    ("today", "newest_listed"),
    [
        (date(2012, 8, 9), None),
        (date(2012, 8, 10), "2012-08-10"),
        (date(2020, 10, 13), "2018-08-27"),
        (date(2030, 1, 1), "2025-04-04"),
    ],
)
def test_listed_openstack_versions_stop_at_today(today: date, newest_listed: str | None) -> None:
    listed = versions.listed_openstack_versions(today)
    assert listed[-1] == "latest"
    assert (listed[-2] if len(listed) > 1 else None) == newest_listed
