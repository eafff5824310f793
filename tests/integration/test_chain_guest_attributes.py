"""Guest attributes through the whole chain: proxy (built-in or haproxy) → agent → API.

Three tenants' guests share one address (127.0.0.5) behind two routers and
an isolated network; each reads and writes only its own server's attributes,
whatever identity headers it forges. The PUT and DELETE bodies cross every
hop; a store outage is a 503 the guest retries, and nothing written is lost.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from tests.integration.test_chain_tenants import REAL_API, SPOOF
from tests.support.chain import chain
from tests.support.postgres import private_postgres
from tests.support.world import UUIDS

from cloudseed.limits import MAX_GUEST_ATTRIBUTE_VALUE_BYTES
from cloudseed.store import SqlStore, open_store, upgrade

# Every forged identity header but X-Forwarded-For/Forwarded, which make a PUT a 400.
FORGED = [(name, value) for name, value in SPOOF
          if name.lower() not in {"x-forwarded-for", "forwarded"}]
OS = "/openstack/latest/guest_attributes"
EC2 = "/latest/guest-attributes"


def _held(store: SqlStore, tenant: str) -> dict[str, str]:
    return {f"{a.namespace}/{a.key}": a.value for a in store.list_guest_attributes(UUIDS[tenant])}


@pytest.mark.parametrize("kind", REAL_API)
def test_each_guest_writes_and_reads_only_its_own_attributes(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    big = ("k" * (MAX_GUEST_ATTRIBUTE_VALUE_BYTES - 1) + "\n").encode()
    with chain(store, tmp_path, kind, api="real") as c:
        # Tenant a's guest forges every identity header to pass as tenant b's server.
        status, _, body = c.ask("a", f"{OS}/hostkeys/ssh-ed25519", FORGED, method="PUT",
                                body=b"ssh-ed25519 AAAA-a")
        assert status == 200, body
        status, _, body = c.ask("a", f"{EC2}/big/value", method="PUT", body=big)
        assert status == 200, body
        status, _, body = c.ask("b", f"{EC2}/hostkeys/ssh-ed25519", method="PUT",
                                body=b"ssh-ed25519 AAAA-b")
        assert status == 200, body
        assert _held(store, "a") == {"hostkeys/ssh-ed25519": "ssh-ed25519 AAAA-a",
                                     "big/value": big.decode()}
        assert _held(store, "b") == {"hostkeys/ssh-ed25519": "ssh-ed25519 AAAA-b"}
        assert _held(store, "c") == {}

        # Same address, another tenant: its own value, never a's.
        assert c.ask("b", f"{OS}/hostkeys/ssh-ed25519", SPOOF)[2] == b"ssh-ed25519 AAAA-b"
        assert c.ask("c", f"{OS}/hostkeys/ssh-ed25519", SPOOF)[0] == 404
        assert c.ask("c", f"{OS}/big/value")[0] == 404
        assert c.ask("c", f"{OS}/")[2] == b""
        assert c.ask("a", f"{OS}/big/value")[2] == big
        # A delete from tenant c for a's key finds nothing; a's value stays.
        assert c.ask("c", f"{EC2}/big/value", FORGED, method="DELETE")[0] == 404
        assert c.ask("a", f"{EC2}/big/value", method="DELETE")[0] == 200
        assert _held(store, "a") == {"hostkeys/ssh-ed25519": "ssh-ed25519 AAAA-a"}
        # A guest-side proxy (X-Forwarded-For on a PUT) is refused, as for the token PUT.
        status, _, _ = c.ask("a", f"{OS}/ns/k", [("X-Forwarded-For", "127.0.0.5")],
                             method="PUT", body=b"v")
        assert status == 400
        assert "ns/k" not in _held(store, "a")


@pytest.mark.parametrize("kind", REAL_API)
def test_store_outage_is_503_and_loses_nothing(tmp_path: Path, kind: str) -> None:
    with ExitStack() as stack:
        pg = stack.enter_context(private_postgres())
        upgrade(pg.url)
        store = stack.enter_context(open_store(pg.url))
        c = stack.enter_context(chain(store, tmp_path, kind, api="real"))
        assert c.ask("a", f"{OS}/boot/stage", method="PUT", body=b"one")[0] == 200
        pg.stop()
        status, headers, _ = c.ask("a", f"{OS}/boot/stage", method="PUT", body=b"two")
        assert status == 503
        assert int(headers["retry-after"]) >= 1
        assert c.ask("a", f"{OS}/boot/stage")[0] == 503
        assert c.ask("a", f"{OS}/boot/stage", method="DELETE")[0] == 503
        pg.start()
        # The acknowledged write survived; the refused ones left no trace.
        assert c.ask("a", f"{OS}/boot/stage")[2] == b"one"
        assert c.ask("a", f"{OS}/boot/stage", method="PUT", body=b"three")[0] == 200
        assert _held(store, "a") == {"boot/stage": "three"}
