from __future__ import annotations

import multiprocessing
import threading

from tests.support import workers
from tests.support.inventory import seed, server

from cloudseed.store import SqlStore

INCREMENTS_PER_WRITER = 40
FORK = multiprocessing.get_context("fork")


def test_two_writer_processes_never_lose_an_update(store: SqlStore) -> None:
    seed(store)
    start_revision = store.revision()
    start = FORK.Barrier(2)
    writers = [
        FORK.Process(
            target=workers.increment_counter,
            args=(store.url, "srv-1", INCREMENTS_PER_WRITER, start),
        )
        for _ in range(2)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0]
    assert store.get_server("srv-1").metadata["count"] == str(2 * INCREMENTS_PER_WRITER)
    # One revision per transaction, none skipped and none reused.
    feed = store.changes_since(start_revision)
    assert [c.revision for c in feed] == list(
        range(start_revision + 1, start_revision + 1 + 2 * INCREMENTS_PER_WRITER)
    )


def test_two_writer_threads_never_lose_an_update(store: SqlStore) -> None:
    seed(store)
    start = threading.Barrier(2)

    def increment() -> None:
        start.wait(timeout=60)
        for _ in range(INCREMENTS_PER_WRITER):
            with store.write() as writer:
                current = writer.reader().get_server("srv-1")
                count = int(current.metadata.get("count", "0"))
                writer.put_server(server(1, key_name="key1", metadata={"count": str(count + 1)}))

    threads = [threading.Thread(target=increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert store.get_server("srv-1").metadata["count"] == str(2 * INCREMENTS_PER_WRITER)


def test_password_race_between_processes_has_exactly_one_winner(store: SqlStore) -> None:
    seed(store)
    server_ids = [f"srv-{n}" for n in range(10, 20)]
    with store.write() as writer:
        for n in range(10, 20):
            writer.put_server(server(n))
    start = FORK.Barrier(2)
    results = FORK.Queue()
    racers = [
        FORK.Process(
            target=workers.race_for_passwords,
            args=(store.url, server_ids, f"from-{name}", start, results),
        )
        for name in ("a", "b")
    ]
    for process in racers:
        process.start()
    outcomes = dict(results.get(timeout=120) for _ in racers)
    for process in racers:
        process.join(timeout=60)
    assert [p.exitcode for p in racers] == [0, 0]
    winners = {sid: value for value, won in outcomes.items() for sid in won}
    assert sorted(winners) == server_ids  # every server won exactly once (dict keys)
    assert sum(len(won) for won in outcomes.values()) == len(server_ids)
    for server_id, value in winners.items():
        assert store.get_password(server_id) == value
