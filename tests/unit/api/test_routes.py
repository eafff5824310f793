from __future__ import annotations

import pytest

from cloudseed.api.routes import MAX_MEMOISED_PATHS, RouteKind, RouteTable, route_for


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("/latest/meta-data/", "ec2/latest/meta-data"),
        ("/latest//meta-data//instance-id/", "ec2/latest/meta-data/instance-id"),
        ("//openstack///latest/meta_data.json", "openstack/latest/meta_data.json"),
        ("/ec2/2009-04-04/user-data", "ec2/2009-04-04/user-data"),
        ("/openstack/./latest/../latest/user_data", "openstack/latest/user_data"),
        ("/../../etc/passwd", "ec2/etc/passwd"),
        ("/%2e%2e/%2e%2e/etc/passwd", "ec2/etc/passwd"),
        ("/openstack/%2E%2E/%2e%2e/%2e%2e/etc/shadow", "ec2/etc/shadow"),
        ("/latest/meta%2Ddata/instance%2did", "ec2/latest/meta-data/instance-id"),
    ],
)
def test_paths_normalise_as_nova_after_percent_decoding(raw: str, key: str) -> None:
    route = route_for(raw)
    assert route.key == key
    assert route.kind is RouteKind.DOCUMENT


@pytest.mark.parametrize("raw", ["/", "//", "/ec2", "/ec2/", "/./", "/.."])
def test_root_is_the_ec2_version_list(raw: str) -> None:
    assert route_for(raw).kind is RouteKind.ROOT


@pytest.mark.parametrize("raw", ["/latest/api/token", "/latest/api/token/", "//latest//api/token"])
def test_token_path(raw: str) -> None:
    assert route_for(raw).kind is RouteKind.TOKEN


@pytest.mark.parametrize("raw", ["/2021-03-23/api/token", "/2009-04-04/api/token/", "/x/api/token"])
def test_versioned_token_paths_are_their_own_kind(raw: str) -> None:
    assert route_for(raw).kind is RouteKind.TOKEN_VERSIONED


@pytest.mark.parametrize("raw", ["/openstack/latest/password", "/openstack/2013-04-04/password/"])
def test_password_paths(raw: str) -> None:
    route = route_for(raw)
    assert route.kind is RouteKind.PASSWORD
    assert route.family == "password"


def test_route_table_stays_bounded_under_junk() -> None:
    table = RouteTable()
    for n in range(MAX_MEMOISED_PATHS * 2 + 5):
        assert table.get(f"/junk/{n}").key == f"ec2/junk/{n}"
    assert len(table._routes) <= MAX_MEMOISED_PATHS
