"""Honest failure while PostgreSQL is down, on every tier at once, with a real restart.

A private cluster (tests/support/postgres.py) is stopped under a running
metadata API, agent and control API, each with its own store as in
production. While it is down: warm answers keep coming, a cold one is 503
with Retry-After (never 500), a control write is 503 with Retry-After and
leaves nothing behind, every /healthz says degraded with the reason, and
each store logs the outage once -- however many retries and requests meet
it. After the restart every tier reconnects by itself and logs the end once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.support.api import RunningApi, api_settings, identity, running_api
from tests.support.control import running_control
from tests.support.logs import json_logs
from tests.support.postgres import private_postgres
from tests.support.proxy import http_request
from tests.unit.agent.test_agent import make_rig, router

from cloudseed.store import SqlStore, open_store, upgrade

DOC = "/openstack/latest/meta_data.json"
# Generous: a restart plus one follower back-off (at most 5 s) on a busy machine.
RECOVERY_SECONDS = 60.0
# Long enough for several follower retries while the store is down.
OUTAGE_SECONDS = 3.0


def _health(fetch: Callable[[], tuple[int, bytes]]) -> dict[str, Any]:
    status, body = fetch()
    assert status == 200, body  # degraded is still 200 (see http/health.py)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + RECOVERY_SECONDS
    while not check():
        assert time.monotonic() < deadline, "the tiers did not recover"
        time.sleep(0.2)


def api_feed_revision(api: RunningApi) -> float:
    for line in api.app.metrics.registry.render().decode().splitlines():
        if line.startswith("cloudseed_api_feed_revision "):
            return float(line.split()[1])
    return 0.0


def test_store_outage_on_every_tier(tmp_path: Path) -> None:
    with ExitStack() as stack:
        pg = stack.enter_context(private_postgres())
        upgrade(pg.url)
        stores: list[SqlStore] = [stack.enter_context(open_store(pg.url)) for _ in range(3)]
        agent_store, api_store, control_store = stores
        # make_rig writes the world (srv-a behind rtr-a, srv-b behind rtr-b, ...).
        rig = stack.enter_context(contextmanager(make_rig)(agent_store, tmp_path))
        # The API holds one server: the first by id (srv-a) is read at start
        # (api/prefetch.py), so srv-b stays cold for the outage.
        api = stack.enter_context(running_api(api_store, api_settings(cache_max_servers=1)))
        control = stack.enter_context(running_control(control_store))
        listener = rig.agent.status_server._servers[0]
        assert isinstance(listener, asyncio.Server)
        status_host, status_port = listener.sockets[0].getsockname()[:2]

        def agent_health() -> tuple[int, bytes]:
            status, _, body = http_request(status_host, status_port, "GET", "/healthz")
            return status, body

        def api_health() -> tuple[int, bytes]:
            reply = api.request("/healthz", admin=True)
            return reply.status, reply.body

        def control_health() -> tuple[int, bytes]:
            reply = control.call("GET", "/healthz", token=None)
            return reply.status, reply.body

        healths = (agent_health, api_health, control_health)
        # The control API makes the first identity key at start: the API re-reads
        # every server once it learns of it. Let that settle before warming, or the
        # re-read may still be on its way when the store goes.
        settled = api_store.revision()
        deadline = time.monotonic() + RECOVERY_SECONDS
        while api_feed_revision(api) < settled or len(api.app.servers) < 1:
            assert time.monotonic() < deadline, "the API did not apply the key"
            time.sleep(0.05)
        # Warm: srv-a through the agent (rtr-a) and on the API.
        assert rig.ask(router("rtr-a"))[0] == 200
        assert api.request(DOC, identity("srv-a", "proj-a")).status == 200
        assert control.call("GET", "/v1/networks").status == 200
        networks_before = control.call("GET", "/v1/networks").json()
        for fetch in healths:
            assert _health(fetch)["status"] == "ok"

        logs = stack.enter_context(json_logs())
        pg.stop()
        time.sleep(OUTAGE_SECONDS)  # the followers retry meanwhile; none may log per retry

        # Warm servers keep being served.
        assert rig.ask(router("rtr-a"))[0] == 200
        assert api.request(DOC, identity("srv-a", "proj-a")).status == 200
        # The agent resolves every guest from its address map, asked before or not.
        assert rig.ask(router("rtr-b"))[0] == 200
        # The API's cold ones hear 503 with Retry-After, never 500; no address or driver text.
        cold = api.request(DOC, identity("srv-b", "proj-b"))
        assert (cold.status, cold.headers.get("retry-after")) == (503, "5"), cold.body
        assert b"127.0.0.1" not in cold.body
        # A control write: 503 with Retry-After, JSON naming the error.
        created = control.call("POST", "/v1/networks",
                               {"name": "made-in-outage",
                                "subnets": [{"name": "mo-v4", "cidr": "10.9.0.0/24"}]})
        assert created.status == 503, created.body
        assert created.headers.get("Retry-After") == "5"
        assert created.json()["error"] == "StoreUnavailable"
        # Every tier says degraded, with the reason.
        for fetch in healths:
            health = _health(fetch)
            assert health["status"] == "degraded", health
            assert health["reasons"][0].startswith("store unreachable since "), health
        # Asked again and again, the outage is still one line per store.
        for _ in range(5):
            assert rig.ask(router("rtr-b"))[0] == 200
            assert api.request(DOC, identity("srv-b", "proj-b")).status == 503
        time.sleep(1.0)
        assert len(logs.events("store unreachable; serving what is cached, "
                               "answering 503 for the rest")) == 3, logs.lines
        assert not [line for line in logs.lines if "exception" in line], logs.lines

        pg.start()
        _until(lambda: all(_health(fetch)["status"] == "ok" for fetch in healths))
        # Reconnected by themselves: the cold ones are served now.
        assert rig.ask(router("rtr-b"))[0] == 200
        assert api.request(DOC, identity("srv-b", "proj-b")).status == 200
        # Nothing of the refused write was stored; the next write works.
        assert control.call("GET", "/v1/networks").json() == networks_before
        again = control.call("POST", "/v1/networks",
                             {"name": "made-after", "subnets": [{"name": "ma-v4",
                                                                 "cidr": "10.9.0.0/24"}]})
        assert again.status == 201, again.body
        # The followers resumed: a change after the outage reaches the warm cache.
        renamed = dataclasses.replace(control_store.get_server("srv-a"), hostname="renamed")
        with control_store.write() as writer:
            writer.put_server(renamed)
        _until(lambda: b"renamed" in api.request(DOC, identity("srv-a", "proj-a")).body)
        assert len(logs.events("store reachable again")) == 3, logs.lines
        assert len(logs.events("store unreachable; serving what is cached, "
                               "answering 503 for the rest")) == 3
        assert not [line for line in logs.lines if "exception" in line], logs.lines
