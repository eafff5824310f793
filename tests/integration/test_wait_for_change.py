"""``?wait_for_change=true`` through proxy → agent → API: answers on a change, not later.

Behavioural bounds only: "returned at once, not after the timeout".
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.support.chain import Chain, chain
from tests.support.world import UUIDS

from cloudseed.api.waiting import ChangeWaiters
from cloudseed.errors import RateLimited
from cloudseed.store import SqlStore

DOC = "/openstack/latest/meta_data.json"
TIMEOUT = 8  # the default api.wait_for_change_max_seconds


def _etag(c: Chain, path: str = DOC) -> str:
    status, headers, _ = c.ask("a", path)
    assert status == 200
    return headers["etag"]


def _change_metadata(store: SqlStore, value: str) -> None:
    server = store.get_server(UUIDS["a"])
    with store.write() as writer:
        writer.put_server(dataclasses.replace(server, metadata={"role": value}))


@pytest.mark.parametrize("kind", ["builtin", "haproxy", "co-located"])
def test_a_waiting_guest_gets_the_new_document_as_soon_as_it_changes(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with chain(store, tmp_path, kind, api="real") as c, ThreadPoolExecutor(1) as pool:
        etag = _etag(c)
        started = time.monotonic()
        waiting = pool.submit(c.ask, "a", f"{DOC}?wait_for_change=true&last_etag={etag}")
        time.sleep(0.5)
        assert not waiting.done()  # nothing changed yet: it waits
        _change_metadata(store, "web")
        status, headers, body = waiting.result(timeout=30)
        assert status == 200
        assert headers["etag"] != etag
        assert b'"role": "web"' in body
        assert time.monotonic() - started < TIMEOUT - 2  # at the change, not at the timeout


def test_timeout_stale_etag_and_parameters(store: SqlStore, tmp_path: Path) -> None:
    with chain(store, tmp_path, api="real") as c:
        etag = _etag(c)
        # Unchanged: the current document at the timeout.
        started = time.monotonic()
        status, headers, _ = c.ask("a", f"{DOC}?wait_for_change=true&timeout_sec=1")
        assert status == 200
        assert headers["etag"] == etag
        assert time.monotonic() - started >= 1
        # The guest's ETag is old: at once. Quotes are optional, as GCE's clients send none.
        started = time.monotonic()
        status, headers, _ = c.ask("a", f"{DOC}?wait_for_change=true&last_etag=0123abc")
        assert status == 200
        assert time.monotonic() - started < TIMEOUT - 2
        status, headers, _ = c.ask("a", f"{DOC}?wait_for_change=true&timeout_sec=1&last_etag="
                                   f"{etag.strip(chr(34))}")
        assert headers["etag"] == etag
        # Listings carry ETags and wait the same way.
        status, headers, _ = c.ask("a", "/latest/meta-data/?wait_for_change=true&timeout_sec=1")
        assert status == 200
        assert headers["etag"]
        for query, field in [("timeout_sec=0", "timeout_sec"), ("timeout_sec=9", "timeout_sec"),
                             ("timeout_sec=x", "timeout_sec"), ("timeout_sec=-1", "timeout_sec"),
                             ("timeout_sec=1&last_etag=" + "e" * 129, "last_etag"),
                             ("timeout_sec=1&last_etag=a%00b", "last_etag"),
                             ("timeout_sec=1&timeout_sec=1&" + "&".join(["x=1"] * 16), "query")]:
            status, _, body = c.ask("a", f"{DOC}?wait_for_change=true&{query}")
            assert status == 400, query
            assert field.encode() in body
        status, _, body = c.ask("a", f"{DOC}?wait_for_change=maybe")
        assert status == 400
        assert b"wait_for_change" in body
        # wait_for_change=false is a plain GET.
        assert c.ask("a", f"{DOC}?wait_for_change=false")[0] == 200


def test_a_server_deleted_while_waited_for_is_404(store: SqlStore, tmp_path: Path) -> None:
    with chain(store, tmp_path, api="real") as c, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(c.ask, "c", f"{DOC}?wait_for_change=true")
        time.sleep(0.5)
        with store.write() as writer:
            writer.delete_port("port-c")
            writer.delete_server(UUIDS["c"])
        status, _, _ = waiting.result(timeout=30)
        assert status == 404


def test_waiters_are_bounded_and_woken_by_server() -> None:
    async def scenario() -> None:
        waiters = ChangeWaiters(max_waiters=2)
        first = asyncio.ensure_future(waiters.wait("s1", 30))
        second = asyncio.ensure_future(waiters.wait("s2", 30))
        await asyncio.sleep(0)
        assert len(waiters) == 2
        with pytest.raises(RateLimited):
            await waiters.wait("s3", 30)
        waiters.wake(["s1"])
        assert await first is True
        assert not second.done()
        assert await waiters.wait("s3", 0.01) is False  # a slot came free; timeout
        waiters.wake(["s2"])
        assert await second is True
        assert len(waiters) == 0

    asyncio.run(scenario())
