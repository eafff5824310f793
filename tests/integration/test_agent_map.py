"""The agent's address map against a PostgreSQL that is down while the agent starts.

A private cluster (tests/support/postgres.py) holds the world and is stopped
before the agent starts: the agent listens anyway, says ``starting`` (503) on
/healthz with the outage as the reason, answers guests 503 with Retry-After
at once (a dead store is not waited on), logs the outage once and no
traceback. The cluster comes back: the agent builds its map by itself and
answers; then the cluster goes away again and every guest -- the ones never
asked before included -- is still answered from the map, and a change made
after the store returns is served.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from tests.support import world
from tests.support.logs import json_logs
from tests.support.postgres import private_postgres
from tests.support.processes import wait_until
from tests.support.proxy import echoed, header_values, http_request
from tests.unit.agent.test_agent import make_rig, network, router, status_address

from cloudseed.store import open_store, upgrade

# A restart plus one build back-off (at most 5 s) on a busy machine.
RECOVERY_SECONDS = 60.0


def test_store_down_while_the_map_builds_then_back(tmp_path: Path) -> None:
    with ExitStack() as stack:
        pg = stack.enter_context(private_postgres())
        upgrade(pg.url)
        store = stack.enter_context(open_store(pg.url))
        writer_store = stack.enter_context(open_store(pg.url))
        world.build(writer_store)
        store.revision()  # a pooled connection that the stop will cut
        pg.stop()
        logs = stack.enter_context(json_logs())
        agent_rig = stack.enter_context(contextmanager(make_rig)(
            store, tmp_path, build_world=False, loaded=False))
        host, port = status_address(agent_rig)

        def health() -> tuple[int, dict[str, object]]:
            status, _, body = http_request(host, port, "GET", "/healthz")
            return status, json.loads(body)

        assert wait_until(lambda: "address map not built" in str(health()[1].get("reasons")),
                          RECOVERY_SECONDS)
        status, body = health()
        assert (status, body["status"]) == (503, "starting"), body
        started = time.monotonic()
        status, headers, text = agent_rig.ask(router("rtr-a"))
        assert (status, headers.get("retry-after")) == (503, "1"), text
        assert time.monotonic() - started < 2.0  # at once: a dead store is not waited on
        assert b"127.0.0.1" not in text

        pg.start()
        assert wait_until(lambda: health()[0] == 200, RECOVERY_SECONDS)
        assert health()[1]["status"] == "ok"
        assert agent_rig.instance(router("rtr-a")) == "srv-a"

        pg.stop()
        # Never asked before, and the store is gone: answered from the map.
        assert agent_rig.instance(router("rtr-b")) == "srv-b"
        assert agent_rig.instance(network("net-c")) == "srv-c"
        pg.start()
        with writer_store.write() as w:
            w.put_server(replace(writer_store.get_server("srv-b"), project_id="proj-z"))
        revision = writer_store.revision()
        assert wait_until(lambda: agent_rig.agent.revision >= revision, RECOVERY_SECONDS)
        _, _, echo = agent_rig.ask(router("rtr-b"))
        assert header_values(echoed(echo), "x-tenant-id") == ["proj-z"]
        assert len(logs.events("store unreachable; serving what is cached, "
                               "answering 503 for the rest")) >= 1
        assert not [line for line in logs.lines if "exception" in line], logs.lines
