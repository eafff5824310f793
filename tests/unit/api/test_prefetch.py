"""The API reads every server in bulk before guests ask (issue #17), real store, real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from functools import partial
from typing import Any

from sqlalchemy import event
from tests.support.api import (
    RunningApi,
    another_server,
    api_settings,
    identity,
    running_api,
    store_view,
)
from tests.support.processes import wait_until
from tests.support.samples import RICH

from cloudseed.api.cache import LoadOnceCache, RenderedServer
from cloudseed.api.observe import ApiMetrics
from cloudseed.api.prefetch import Prefetch
from cloudseed.http.metrics import Registry
from cloudseed.model import ServerView
from cloudseed.render import RenderOptions
from cloudseed.render.sections import ServerDocuments
from cloudseed.store import SqlStore

DOCUMENT = "/openstack/latest/meta_data.json"


@contextmanager
def guest_path_statements(store: SqlStore) -> Iterator[list[str]]:
    """SQL run on the API's store threads (the guest path), not the change follower's."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if threading.current_thread().name.startswith("store"):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def fleet(store: SqlStore, extra: int) -> list[tuple[str, str]]:
    """RICH and ``extra`` small servers: (server id, tenant) each."""
    store_view(store, RICH)
    servers = [(RICH.server.id, RICH.server.project_id)]
    for n in range(1, extra + 1):
        server = another_server(store, n, f"10.0.0.{100 + n}")
        servers.append((server.id, server.project_id))
    return servers


def name_served(api: RunningApi, server_id: str, tenant: str) -> str | int:
    reply = api.request(DOCUMENT, identity(server_id, tenant))
    if reply.status != 200:
        return reply.status
    return str(json.loads(reply.body)["name"])


def metric(api: RunningApi, name: str) -> float:
    """A counter's value; a counter never incremented is not listed (0)."""
    for line in api.request("/metrics", admin=True).body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_every_server_is_served_after_start_without_a_store_query(store: SqlStore) -> None:
    servers = fleet(store, 3)
    with running_api(store, api_settings()) as api, guest_path_statements(store) as statements:
        for server_id, tenant in servers:
            assert api.request(DOCUMENT, identity(server_id, tenant)).status == 200
            assert api.request("/latest/meta-data/hostname", identity(server_id, tenant)).status == 200
        assert statements == []
        assert metric(api, "cloudseed_api_cache_misses_total") == 0
        assert metric(api, "cloudseed_api_prefetched_servers_total") == len(servers)


def grew(api: RunningApi, held: float) -> bool:
    return metric(api, "cloudseed_api_prefetched_servers_total") > held


def test_a_change_a_new_server_and_a_deletion_reach_every_worker(store: SqlStore) -> None:
    servers = fleet(store, 2)
    changed_id, tenant = servers[1]
    deleted_id, deleted_tenant = servers[2]
    with running_api(store, api_settings()) as first, running_api(store, api_settings()) as second:
        workers = (first, second)
        for api in workers:
            assert name_served(api, changed_id, tenant) == "guest1"
        before = [metric(api, "cloudseed_api_prefetched_servers_total") for api in workers]
        current = store.get_server(changed_id)
        with store.write() as w:
            w.put_server(dataclasses.replace(current, name="renamed"))
            w.delete_server(deleted_id)
        created = another_server(store, 9, "10.0.0.109")
        for api, held in zip(workers, before, strict=True):
            # Both read in bulk from the feed, before any guest asks.
            assert wait_until(partial(grew, api, held + 1))
        with guest_path_statements(store) as statements:
            for api in workers:
                assert name_served(api, changed_id, tenant) == "renamed"
                assert name_served(api, created.id, created.project_id) == "guest9"
            assert statements == []
        for api in workers:
            # A deleted server is gone (no longer held: one lazy read says so).
            assert name_served(api, deleted_id, deleted_tenant) == 404
            assert name_served(api, RICH.server.id, RICH.server.project_id) == RICH.server.name


def test_prefetch_holds_at_most_cache_max_servers(store: SqlStore) -> None:
    servers = fleet(store, 3)
    with running_api(store, api_settings(cache_max_servers=2)) as api:
        assert api.call(lambda: len(api.app.servers)) == 2
        assert metric(api, "cloudseed_api_prefetched_servers_total") == 2
        # The first two by id are held; the rest load on request, counted.
        for server_id, tenant in sorted(servers):
            assert api.request(DOCUMENT, identity(server_id, tenant)).status == 200
        assert metric(api, "cloudseed_api_cache_misses_total") == len(servers) - 2
        assert api.call(lambda: len(api.app.servers)) == 2


def test_the_bulk_read_equals_one_read_per_server(store: SqlStore) -> None:
    ids = sorted(server_id for server_id, _tenant in fleet(store, 3))
    revision, views = store.server_views(None, 100)
    assert revision == store.revision()
    assert list(views) == [store.server_view(server_id) for server_id in ids]
    _, some = store.server_views([ids[2], "no-such-server", ids[0]], 100)
    assert list(some) == [store.server_view(ids[0]), store.server_view(ids[2])]
    _, bounded = store.server_views(None, 2)
    assert [view.server.id for view in bounded] == ids[:2]


def test_a_change_announced_during_a_bulk_read_is_not_held_from_that_read() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        reads: list[list[str] | None] = []

        async def read(ids: Sequence[str] | None, _limit: int) -> tuple[int, list[ServerView]]:
            reads.append(list(ids) if ids is not None else None)
            version = len(reads)  # what the store held when this read ran
            await gate.wait()
            server = dataclasses.replace(RICH.server, id="a", name=f"v{version}")
            return version, [dataclasses.replace(RICH, server=server)]

        async def never(_key: str) -> RenderedServer | None:
            raise AssertionError("the lazy path must not run")

        cache: LoadOnceCache[str, RenderedServer | None] = LoadOnceCache(never, 10)
        prefetch = Prefetch(cache, read, lambda view: RenderedServer.of(
            ServerDocuments(view, RenderOptions(today=date(2026, 1, 1)))), 10,
            ApiMetrics(Registry()))
        prefetch.changed(["a"])
        while not reads:
            await asyncio.sleep(0)
        cache.drop(["a"])  # the store changed while the read was in flight, and the feed said so
        prefetch.changed(["a"])
        gate.set()
        while len(reads) < 2 or "a" not in cache.entries:
            await asyncio.sleep(0)
        held = cache.entries["a"]
        assert held is not None
        assert held.server.name == "v2"
        assert reads == [["a"], ["a"]]
        await prefetch.stop()

    asyncio.run(scenario())
