"""The audit's table of what is sensitive, and its loss policy when the store is away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cloudseed.api.audit import AuditTrail, sensitive
from cloudseed.api.routes import route_for
from cloudseed.errors import StoreUnavailable
from cloudseed.http.metrics import Registry
from cloudseed.model import AuditRecord
from cloudseed.settings import AuditSettings

AUDITED = [
    ("GET", "/latest/user-data"), ("GET", "/2009-04-04/user-data"),
    ("GET", "/openstack/2012-08-10/user_data"), ("GET", "/openstack/latest/vendor_data.json"),
    ("GET", "/openstack/latest/vendor_data2.json"), ("GET", "/openstack/latest/password"),
    ("POST", "/openstack/latest/password"), ("GET", "/openstack/content/0000"),
    ("GET", "/latest/dynamic/instance-identity/document"),
    ("GET", "/2021-03-23/dynamic/instance-identity/rsa2048"),
    ("GET", "/openstack/latest/identity_token"), ("POST", "/openstack/latest/phone_home"),
    ("PUT", "/latest/guest-attributes/ns/key"), ("DELETE", "/openstack/latest/guest_attributes/n/k"),
    ("GET", "/openstack/latest/%75ser_data"),  # decoded before it is classified
]
NOT_AUDITED = [
    ("GET", "/"), ("GET", "/openstack/latest/meta_data.json"),
    ("GET", "/openstack/latest/network_data.json"), ("GET", "/latest/meta-data/instance-id"),
    ("GET", "/latest/dynamic/instance-identity/"), ("PUT", "/latest/api/token"),
    ("GET", "/latest/guest-attributes/ns/key"), ("GET", "/latest/meta-data/user-data-x"),
]


@pytest.mark.parametrize(("method", "path"), AUDITED)
def test_sensitive_reads_and_guest_writes_are_audited(method: str, path: str) -> None:
    assert sensitive(route_for(path), method)


@pytest.mark.parametrize(("method", "path"), NOT_AUDITED)
def test_other_requests_are_not(method: str, path: str) -> None:
    assert not sensitive(route_for(path), method)


def test_a_store_outage_keeps_records_up_to_the_bound_and_counts_the_rest() -> None:
    stored: list[AuditRecord] = []
    outage = True

    async def append(records: Sequence[AuditRecord]) -> None:
        if outage:
            raise StoreUnavailable("the store is away", 1)
        stored.extend(records)

    async def prune(servers: Sequence[str], keep: int, older_than: str) -> int:
        return 0

    registry = Registry()
    trail = AuditTrail(AuditSettings(max_pending=3), append, prune, registry, "chain")
    route = route_for("/latest/user-data")

    async def scenario() -> None:
        nonlocal outage
        for n in range(2):
            trail.note(f"s{n}", route, "GET", 200, "10.0.0.5")
        await trail.flush()  # fails: both kept
        for n in range(2, 5):
            trail.note(f"s{n}", route, "GET", 200, "10.0.0.5")  # s4 over the bound
        await trail.flush()  # fails again: s0..s2 kept, oldest first
        outage = False
        await trail.flush()

    asyncio.run(scenario())
    assert [r.server_id for r in stored] == ["s0", "s1", "s2"]
    rendered = registry.render().decode()
    assert 'cloudseed_api_audit_records_total{result="dropped"} 2' in rendered
    assert 'cloudseed_api_audit_records_total{result="stored"} 3' in rendered


def test_hostile_paths_are_kept_escaped_and_a_refused_batch_does_not_stop_the_audit() -> None:
    stored: list[AuditRecord] = []
    refuse = True

    async def append(records: Sequence[AuditRecord]) -> None:
        if refuse:
            raise ValueError("a row the store will never take")
        stored.extend(records)

    async def prune(servers: Sequence[str], keep: int, older_than: str) -> int:
        return 0

    registry = Registry()
    trail = AuditTrail(AuditSettings(), append, prune, registry, "direct")

    async def scenario() -> None:
        nonlocal refuse
        trail.note("s", route_for("/latest/user-data"), "GET", 200, "10.0.0.5")
        await trail.flush()  # refused for good: dropped, not retried forever
        refuse = False
        trail.note("s", route_for("/openstack/latest/guest_attributes/n%00s/\udcff"), "PUT", 400,
                   "10.0.0.5")
        await trail.flush()

    asyncio.run(scenario())
    assert [r.document for r in stored] == ["openstack/latest/guest_attributes/n\\x00s/\\udcff"]
    assert 'cloudseed_api_audit_records_total{result="dropped"} 1' in registry.render().decode()
