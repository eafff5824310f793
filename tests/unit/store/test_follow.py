"""The one change follower: batches in order, and a failing digest logged once, then cleared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from tests.support.logs import json_logs

from cloudseed.model import Network
from cloudseed.store import SqlStore
from cloudseed.store.follow import ChangeFollower
from cloudseed.store.protocol import Change


def _until(check: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_digest_bug_is_logged_once_shown_in_health_and_clears(store: SqlStore) -> None:
    broken = True
    applied: list[tuple[list[str], int]] = []

    def digest(changes: Sequence[Change]) -> list[str]:
        if broken:
            raise ValueError("planted")
        return [c.id for c in changes]

    loop = asyncio.new_event_loop()
    follower: ChangeFollower[list[str]] = ChangeFollower(
        store, digest, lambda ids, rev: applied.append((ids, rev)), loop)
    follower.start()
    try:
        with json_logs() as logs:
            with store.write() as w:
                w.put_network(Network("net-1", "one"))
            _until(lambda: follower.problem() is not None)
            time.sleep(1.0)  # several retries meanwhile
            failed = logs.events("change feed failed; retrying with back-off")
            assert len(failed) == 1
            assert "ValueError: planted" in failed[0]["exception"]
            assert "change feed failing since" in (follower.problem() or "")
            broken = False
            _until(lambda: follower.problem() is None)
            assert len(logs.events("change feed readable again")) == 1
        loop.run_until_complete(asyncio.sleep(0.05))  # run the applies handed to the loop
        assert applied
        assert applied[-1][1] == store.revision()
        assert "net-1" in applied[-1][0]
    finally:
        follower.stop()
        loop.close()
