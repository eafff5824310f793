"""The co-located front's own rules, on loopback (the shared suites run in
test_chain_tenants / _guest_attributes / test_wait_for_change / test_audit with
``kind="co-located"``; real namespaces in tests/privileged/test_colocated_front.py).

No agent is asked, so the agent's per-server rate limit runs in the front; the
front's per-source limit stays per namespace; the app's third identification
mode answers only what the front resolved.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.support.chain import chain
from tests.support.counting import CountingStore
from tests.support.proxy import unix_request
from tests.support.world import UUIDS

from cloudseed.api.app import build_metadata_app
from cloudseed.http.message import Request, Response
from cloudseed.settings import ApiMode, ApiSettings, ProxySettings, Secret, Settings
from cloudseed.store import SqlStore

DOC = "/openstack/latest/meta_data.json"


def test_the_per_server_rate_limit_applies_in_the_front(store: SqlStore, tmp_path: Path) -> None:
    with chain(store, tmp_path, "co-located", api="real", rate_limit_burst=3,
               rate_limit_per_second=0.01) as c:
        assert [c.ask("a", DOC)[0] for _ in range(3)] == [200, 200, 200]
        status, headers, body = c.ask("a", DOC)
        assert status == 429, body
        assert int(headers["retry-after"]) >= 1
        # Another server on the same address (another tenant's listener): its own bucket.
        assert c.ask("b", DOC)[0] == 200


def test_the_per_source_limit_is_per_namespace(store: SqlStore, tmp_path: Path) -> None:
    held = f"{DOC}?wait_for_change=true"
    with chain(store, tmp_path, "co-located", api="real",
               proxy_settings=ProxySettings(max_requests_per_source=1)) as c, \
            ThreadPoolExecutor(1) as pool:
        etag = c.ask("a", DOC)[1]["etag"]
        waiting = pool.submit(c.ask, "a", f"{held}&last_etag={etag}")
        # The long-poll holds tenant a's one request in flight: a second one is refused...
        for _ in range(50):
            status, _, body = c.ask("a", DOC)
            if status == 429:
                break
        assert status == 429, body
        assert b"too many requests in flight" in body
        # ...while the same address in another namespace is another source.
        assert c.ask("b", DOC)[0] == 200
        server = store.get_server(UUIDS["a"])
        with store.write() as w:
            w.put_server(dataclasses.replace(server, metadata={"role": "db"}))
        assert waiting.result(timeout=30)[0] == 200
        assert c.ask("a", DOC)[0] == 200


def test_guests_wait_for_the_address_map_and_healthz_says_starting(
    store: SqlStore, tmp_path: Path
) -> None:
    counting = CountingStore(store)
    counting.hold.clear()  # the map's build waits
    with chain(store, tmp_path, "co-located", api="real", answer_store=counting,
               loaded=False) as c, ThreadPoolExecutor(1) as pool:
        front = c.proxies["a"].front
        assert front is not None
        status_socket = tmp_path / "front-status.sock"
        c.lt.run(front.status_server.listen_unix(status_socket))
        code, _, body = unix_request(status_socket, "GET", "/healthz")
        assert (code, json.loads(body)["status"]) == (503, "starting")
        waiting = pool.submit(c.ask, "a", DOC)
        time.sleep(0.3)
        assert not waiting.done()  # parked, not refused
        counting.hold.set()
        status, _, body = waiting.result(timeout=10)
        assert status == 200, body
        assert json.loads(body)["uuid"] == UUIDS["a"]
        code, _, body = unix_request(status_socket, "GET", "/healthz")
        assert (code, json.loads(body)["status"]) == (200, "ok")


def test_a_front_resolved_app_answers_only_what_its_front_resolved(store: SqlStore) -> None:
    settings = Settings(api=ApiSettings(mode=ApiMode.DIRECT, ready_map=False))
    app = build_metadata_app(store, settings, front_resolves=True)
    response = app.handle(Request("GET", DOC, "", [("x-instance-id", UUIDS["a"])], b"",
                                  "127.0.0.5"))
    assert isinstance(response, Response)
    assert response.status == 400
    # Behind the agent (proxy mode) the connection is not the guest's: refused at build.
    proxy = Settings(shared_secret=Secret("s"), api=ApiSettings(mode=ApiMode.PROXY))
    with pytest.raises(ValueError, match="direct"):
        build_metadata_app(store, proxy, front_resolves=True)
