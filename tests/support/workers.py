"""Work that store tests run in other processes (each opens its own store)."""

from __future__ import annotations

import dataclasses
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event

from cloudseed.model import Network
from cloudseed.store import open_store

# Long enough that the parent is most likely already waiting; if it is not,
# the test still passes, it only proves less.
WRITE_DELAY_SECONDS = 0.3


def write_one_network(url: str, go: Event) -> None:
    go.wait(timeout=60)
    time.sleep(WRITE_DELAY_SECONDS)
    with open_store(url, upgrade=False) as store, store.write() as writer:
        writer.put_network(Network("net-from-child", "child"))


def increment_counter(url: str, server_id: str, times: int, start: Barrier) -> None:
    """Read-modify-write the server's metadata["count"], once per transaction."""
    with open_store(url, upgrade=False) as store:
        start.wait(timeout=60)
        for _ in range(times):
            with store.write() as writer:
                current = writer.reader().get_server(server_id)
                count = int(current.metadata.get("count", "0"))
                metadata = {**current.metadata, "count": str(count + 1)}
                writer.put_server(dataclasses.replace(current, metadata=metadata))


def race_for_passwords(
    url: str, server_ids: list[str], value: str, start: Barrier, results: Queue[object]
) -> None:
    with open_store(url, upgrade=False) as store:
        start.wait(timeout=60)
        won = [server_id for server_id in server_ids if store.set_password_once(server_id, value)]
    results.put((value, won))
