"""The access audit through the whole chain: every sensitive read a crawl makes, nothing else.

Three tenants share one guest address behind different routers and send
spoofed identity headers; each read lands in its own server's audit, with the
address the proxy saw, tier ``chain`` and this host. Read back through the
control API, as an operator does.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_chain_tenants import SPOOF
from tests.support.chain import GUEST_IP, chain
from tests.support.control import RunningControl, running_control
from tests.support.world import UUIDS

from cloudseed.store import SqlStore

# A cloud-init-like crawl of both trees, and whether each read is audited.
CRAWL: list[tuple[str, bool]] = [
    ("/openstack", False),
    ("/openstack/latest/meta_data.json", False),
    ("/openstack/latest/network_data.json", False),
    ("/openstack/latest/user_data", True),
    ("/openstack/latest/vendor_data.json", True),
    ("/openstack/latest/vendor_data2.json", True),
    ("/openstack/latest/password", True),
    ("/latest/meta-data/", False),
    ("/latest/meta-data/instance-id", False),
    ("/latest/meta-data/public-keys/", False),
    ("/2009-04-04/user-data", True),
    ("/latest/user-data", True),
    ("/latest/dynamic/instance-identity/", False),
    ("/latest/dynamic/instance-identity/document", True),
    ("/latest/dynamic/instance-identity/pkcs7", True),
    ("/openstack/latest/identity_token?audience=vault", True),
]


def _audit(ctl: RunningControl, tenant: str, expected: int) -> list[dict[str, Any]]:
    # Workers write in batches every audit.flush_seconds (1 s by default).
    deadline = time.monotonic() + 30
    while True:
        reply = ctl.call("GET", f"/v1/servers/{UUIDS[tenant]}/audit")
        assert reply.status == 200, reply.body
        records: list[dict[str, Any]] = reply.json()["records"]
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["builtin", "haproxy", "co-located"])
def test_the_audit_holds_every_sensitive_read_of_a_crawl_and_nothing_else(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, kind, api="real") as c:
        statuses = []
        for path, _ in CRAWL:
            status, _, _ = c.ask("a", path, SPOOF)
            statuses.append(status)
        status_b, _, _ = c.ask("b", "/latest/user-data", SPOOF)
        revision = store.revision()

        expected = [(path.partition("?")[0], status)
                    for (path, audited), status in zip(CRAWL, statuses, strict=True) if audited]
        records = _audit(ctl, "a", len(expected))
        time.sleep(1.5)  # one more flush interval: nothing else may arrive
        records = _audit(ctl, "a", len(expected))
        got = [("/" + r["document"].removeprefix("ec2/"), r["status"]) for r in reversed(records)]
        assert got == expected
        for record in records:
            assert record["server_id"] == UUIDS["a"]
            assert record["source"] == GUEST_IP
            assert record["tier"] == ("front" if kind == "co-located" else "chain")
            assert record["host"] == socket.gethostname()
            assert record["method"] == "GET"
        b = _audit(ctl, "b", 1)
        assert [(r["document"], r["status"]) for r in b] == [("ec2/latest/user-data", status_b)]
        assert ctl.call("GET", f"/v1/servers/{UUIDS['c']}/audit").json()["records"] == []
        # A log, not inventory: reads bump no revision and put nothing in the feed.
        assert store.revision() == revision


def test_audit_paging_limits_and_retention_by_count(store: SqlStore, tmp_path: Path) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, api="real") as c:
        for _ in range(5):
            c.ask("a", "/latest/user-data")
        records = _audit(ctl, "a", 5)
        assert len(records) == 5
        page = ctl.call("GET", f"/v1/servers/{UUIDS['a']}/audit?limit=2").json()
        assert [r["id"] for r in page["records"]] == [r["id"] for r in records[:2]]
        rest = ctl.call("GET", f"/v1/servers/{UUIDS['a']}/audit?limit=3&before="
                        f"{page['next_before']}").json()
        assert [r["id"] for r in rest["records"]] == [r["id"] for r in records[2:]]
        assert rest["next_before"] == records[-1]["id"]
        for bad in ("limit=0", "limit=1001", "limit=x", "before=-1", "before=1e3"):
            reply = ctl.call("GET", f"/v1/servers/{UUIDS['a']}/audit?{bad}")
            assert reply.status == 400, bad
            assert reply.json()["field"] == bad.partition("=")[0]
        assert ctl.call("GET", "/v1/servers/nope/audit").status == 404
        assert ctl.call("GET", f"/v1/servers/{UUIDS['a']}/audit", token=None).status == 401
        # Retention: the newest N per server stay, older ones (and old ages) go.
        dropped = store.prune_audit([UUIDS["a"]], 2, "1970-01-01T00:00:00.000Z")
        assert dropped == 3
        kept = ctl.call("GET", f"/v1/servers/{UUIDS['a']}/audit").json()["records"]
        assert [r["id"] for r in kept] == [r["id"] for r in records[:2]]
        assert store.prune_audit([], 1000, "9999-01-01T00:00:00.000Z") == 2
