"""The per-host ready map (issue #17): a real renderer writes a real LMDB map from
a real store (SQLite and PostgreSQL); real API workers answer from it.

What must hold: the map's documents are byte for byte what a worker renders;
it follows every change and deletion; a restart resumes without re-rendering
the fleet; other options are rendered again; and a worker never serves an
entry older than a change it has seen, whatever the renderer does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from tests.support.api import RunningApi, api_settings, identity, running_api, store_view
from tests.support.postgres import private_postgres
from tests.support.ready import RunningRenderer, running_renderer
from tests.support.samples import BARE, RICH

from cloudseed.api.config import check_api_settings
from cloudseed.errors import CloudseedError
from cloudseed.model import ServerView
from cloudseed.ready.codec import (
    decode_view,
    document_table,
    fingerprint,
    pack,
    section_documents,
    unpack,
)
from cloudseed.ready.store import ReadyMap
from cloudseed.render.sections import ServerDocuments
from cloudseed.settings import Settings
from cloudseed.store import SqlStore, open_store, upgrade

TODAY = date(2026, 12, 4)


def api_of(tmp_path: Path, **api: object) -> dict[str, object]:
    return {"ready_map": True, "ready_map_dir": str(tmp_path / "maps"), **api}


def settings(tmp_path: Path, **api: object) -> Settings:
    return api_settings(**api_of(tmp_path, **api))


def fleet(count: int) -> list[ServerView]:
    """RICH itself (with its ports) and more servers like RICH and BARE without ports."""
    views = []
    for index in range(count):
        if index == 1:
            views.append(RICH)
            continue
        base = RICH if index % 2 else BARE
        server = dataclasses.replace(base.server, id=f"server-{index:04d}", name=f"vm-{index}",
                                     hostname=f"vm-{index}", ec2_id=1000 + index)
        views.append(dataclasses.replace(base, server=server, ports=()))
    return views


def put(store: SqlStore, view: ServerView) -> None:
    store_view(store, view)


def stored_fleet(store: SqlStore, count: int) -> list[ServerView]:
    views = fleet(count)
    for view in views:
        put(store, view)
    return views


def outcomes(api: RunningApi) -> dict[str, float]:
    """The worker's ready-map lookups by outcome (hit, stale, absent)."""
    found = {}
    for line in api.app.metrics.registry.render().decode().splitlines():
        if line.startswith("cloudseed_api_ready_map_total{"):
            label, value = line.split("} ")
            found[label.split('"')[1]] = float(value)
    return found


def wait_until(predicate: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def check_entry(running: RunningRenderer, store: SqlStore, settings_: Settings,
                server_id: str) -> None:
    """The map's entry for ``server_id`` is what a worker renders from the store."""
    config = check_api_settings(settings_)
    blob = running.ready.get(server_id)
    assert blob is not None, server_id
    entry = unpack(blob)
    assert entry is not None
    view = store.server_view(server_id)
    held = decode_view(entry.view)
    # A view's revision is the store's when it was read: a later write to another
    # server moves the store's on without changing this server.
    assert held.revision <= view.revision
    assert dataclasses.replace(held, revision=view.revision) == view
    options = config.render_options(None, TODAY)
    assert entry.fingerprint == fingerprint(options, config.ready_sections)
    expected = ServerDocuments(view, options)
    assert set(entry.sections) == set(config.ready_sections)
    table = document_table(entry.documents)
    for section, raw in entry.sections.items():
        assert section_documents(table, raw) == expected.section(section), (server_id, section)


def test_the_map_holds_every_server_as_a_worker_renders_it(
        store: SqlStore, tmp_path: Path) -> None:
    views = stored_fleet(store, 7)
    config = settings(tmp_path)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        assert len(running.ready) == len(views)
        for view in views:
            check_entry(running, store, config, view.server.id)


def test_changes_and_deletions_reach_the_map(store: SqlStore, tmp_path: Path) -> None:
    views = stored_fleet(store, 4)
    config = settings(tmp_path)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        with store.write() as w:
            w.put_server(dataclasses.replace(views[1].server, hostname="renamed"))
            w.delete_server(views[2].server.id)
        put(store, fleet(6)[5])  # a new server
        running.caught_up()
        assert running.ready.get(views[2].server.id) is None
        assert len(running.ready) == 4
        for server_id in (views[1].server.id, "server-0005"):
            check_entry(running, store, config, server_id)
        assert b"renamed" in (running.ready.get(views[1].server.id) or b"")


def revisions(running: RunningRenderer, views: list[ServerView]) -> dict[str, int | None]:
    """Each server's entry's revision (None: no entry)."""
    found: dict[str, int | None] = {}
    for view in views:
        blob = running.ready.get(view.server.id)
        entry = unpack(blob) if blob is not None else None
        found[view.server.id] = entry.revision if entry is not None else None
    return found


def test_a_restart_renders_what_changed_not_the_fleet(store: SqlStore, tmp_path: Path) -> None:
    views = stored_fleet(store, 6)
    config = settings(tmp_path)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        before = revisions(running, views)
    with store.write() as w:  # while no renderer runs
        w.put_server(dataclasses.replace(views[3].server, hostname="while-down"))
        w.delete_server(views[4].server.id)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        after = revisions(running, views)
        check_entry(running, store, config, views[3].server.id)
    # Only the changed server was rendered again; the deleted one is gone.
    changed = {views[3].server.id, views[4].server.id}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed}
    assert after[views[4].server.id] is None
    assert (after[views[3].server.id] or 0) > (before[views[3].server.id] or 0)


def fingerprints(running: RunningRenderer, views: list[ServerView]) -> set[str]:
    return {entry.fingerprint for view in views
            if (blob := running.ready.get(view.server.id)) is not None
            and (entry := unpack(blob)) is not None}


def test_other_render_options_render_every_server_again(
        store: SqlStore, tmp_path: Path) -> None:
    views = stored_fleet(store, 3)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        old = fingerprints(running, views)
    other = api_of(tmp_path, dhcp_domain="example.org")
    with running_renderer(store, **other) as running:
        running.caught_up()
        # The old entries stay until each is replaced by the whole-fleet pass.
        assert wait_until(lambda: len(fingerprints(running, views) - old) == 1
                          and not fingerprints(running, views) & old)
        for view in views:
            check_entry(running, store, api_settings(**other), view.server.id)


def test_a_pass_cut_short_is_done_again_by_the_next_renderer(
        store: SqlStore, tmp_path: Path) -> None:
    """Options changed and the renderer stopped after rendering the first server anew:
    the next one must render the rest, though the first entry looks current."""
    views = stored_fleet(store, 3)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        path = running.path
    other = api_of(tmp_path, dhcp_domain="example.org")
    config = check_api_settings(api_settings(**other))
    options = config.render_options(None, TODAY)
    first = min(views, key=lambda view: view.server.id)
    documents_ = ServerDocuments(store.server_view(first.server.id), options)
    cut_short = ReadyMap.writer(path, config.ready_map_max_bytes)
    try:  # what the cut-short pass wrote: the first server only
        cut_short.write([(first.server.id, pack(
            fingerprint(options, config.ready_sections), store.revision(), documents_.view,
            {s: documents_.section(s) for s in config.ready_sections}))], ())
    finally:
        cut_short.close()
    with running_renderer(store, **other) as running:
        running.caught_up()
        new = fingerprint(options, config.ready_sections)
        assert wait_until(lambda: fingerprints(running, views) == {new})
        for view in views:
            check_entry(running, store, api_settings(**other), view.server.id)


# -- workers reading it -----------------------------------------------------------

PATHS = ("/openstack/2018-08-27/meta_data.json", "/openstack/latest/network_data.json",
         "/latest/meta-data/hostname", "/2009-04-04/meta-data/", "/latest/user-data",
         "/openstack/2013-04-04/meta_data.json",  # not rendered ahead: rendered in the worker
         "/openstack")


def test_workers_answer_from_the_map_exactly_as_without_it(
        store: SqlStore, tmp_path: Path) -> None:
    put(store, RICH)
    who = identity(RICH.server.id, RICH.server.project_id)
    with running_api(store, api_settings()) as plain:
        expected = {path: plain.request(path, who) for path in PATHS}
    config = settings(tmp_path)
    with (running_renderer(store, **api_of(tmp_path)) as running,
          running_api(store, config) as api):
        running.caught_up()
        for path in PATHS:
            reply = api.request(path, who)
            assert (reply.status, reply.headers.get("etag")) == (
                expected[path].status, expected[path].headers.get("etag")), path
            if "meta_data.json" not in path:  # its random_seed differs per response
                assert reply.body == expected[path].body, path
        assert outcomes(api) == {"hit": 1}
        # Nothing was read from the store or rendered whole in the worker.
        assert api.app.metrics.cache_misses.get() == 0
        assert api.app.metrics.renders.get() == 0


def test_a_worker_never_serves_an_entry_older_than_a_change(
        store: SqlStore, tmp_path: Path) -> None:
    put(store, RICH)
    who = identity(RICH.server.id, RICH.server.project_id)
    config = settings(tmp_path)
    hostname = "/latest/meta-data/hostname"
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
    # The renderer is stopped: the map keeps the old entry from now on.
    with running_api(store, config) as api:
        assert api.request(hostname, who).body.startswith(RICH.server.hostname.encode())
        with store.write() as w:
            w.put_server(dataclasses.replace(RICH.server, hostname="after-the-map"))
        assert wait_until(lambda: api.request(hostname, who).body.startswith(b"after-the-map"))
        assert outcomes(api)["stale"] >= 1


def test_entries_rendered_with_other_options_are_not_served(
        store: SqlStore, tmp_path: Path) -> None:
    put(store, RICH)
    who = identity(RICH.server.id, RICH.server.project_id)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
    # This worker appends another domain than the renderer did.
    with running_api(store, settings(tmp_path, dhcp_domain="other.example")) as api:
        reply = api.request("/latest/meta-data/hostname", who)
        assert reply.body == f"{RICH.server.hostname}.other.example".encode()
        # Looked up once: the store load that follows does not read the map again.
        assert outcomes(api) == {"stale": 1}


def test_a_map_of_another_store_is_not_used(store: SqlStore, tmp_path: Path) -> None:
    put(store, RICH)
    config = settings(tmp_path)
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        path = Path(running.ready.path)
    # The same directory presented as another store's map.
    other = path.parent / "another-store-id"
    path.rename(other)
    with running_api(store, config) as api:
        api.request("/latest/meta-data/hostname", identity(RICH.server.id, RICH.server.project_id))
        assert outcomes(api)["absent"] >= 1


@pytest.mark.parametrize("count", [2500])
def test_a_fleet_larger_than_a_page(store: SqlStore, tmp_path: Path, count: int) -> None:
    """Pages of the whole-fleet pass (2,000 servers each) join without a gap or overlap."""
    base = BARE
    with store.write() as w:
        for index in range(count):
            w.put_server(dataclasses.replace(base.server, id=f"s{index:05d}",
                                             name=f"h{index}", hostname=f"h{index}",
                                             ec2_id=1000 + index))
    with running_renderer(store, **api_of(tmp_path)) as running:
        running.caught_up()
        assert len(running.ready) == count
        assert all(running.ready.get(f"s{index:05d}") for index in range(count))


def test_a_guests_password_shows_at_once_not_the_maps_older_entry(
        store: SqlStore, tmp_path: Path) -> None:
    put(store, dataclasses.replace(RICH, password=""))
    who = identity(RICH.server.id, RICH.server.project_id)
    config = settings(tmp_path)
    path = "/openstack/latest/password"
    with running_renderer(store, **api_of(tmp_path)) as running, \
            running_api(store, config) as api:
        running.caught_up()
        assert api.request(path, who).body == b""  # from the map
        assert outcomes(api) == {"hit": 1}
        assert api.request(path, who, method="POST", body=b"s3cret").status == 200
        # At once, before the feed or the renderer could have said anything.
        assert api.request(path, who).body == b"s3cret"


def test_with_the_store_away_cold_servers_are_served_from_the_map(tmp_path: Path) -> None:
    """PostgreSQL stopped: a server no worker has asked for is still served (from
    the map, where it would be 503 without it); restarted, the renderer carries on."""
    with private_postgres() as pg:
        upgrade(pg.url)
        with open_store(pg.url) as store:
            views = stored_fleet(store, 3)
            config = settings(tmp_path)
            with running_renderer(store, **api_of(tmp_path)) as running, \
                    running_api(store, config) as api:
                running.caught_up()
                pg.stop()
                for view in views:
                    who = identity(view.server.id, view.server.project_id)
                    reply = api.request("/latest/meta-data/hostname", who)
                    assert (reply.status, reply.body) == (
                        200, f"{view.server.hostname}.novalocal".encode())
                pg.start()
                assert wait_until(lambda: _written(store, views[0], "back-again"), 60)
                running.caught_up(60)
                check_entry(running, store, config, views[0].server.id)


def _written(store: SqlStore, view: ServerView, hostname: str) -> bool:
    """Rename the server; False while the store is not reachable yet."""
    try:
        with store.write() as w:
            w.put_server(dataclasses.replace(view.server, hostname=hostname))
    except CloudseedError:
        return False
    return True
