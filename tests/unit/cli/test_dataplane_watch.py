"""``dataplane sync --watch`` waits through guests' own writes and wakes for the rest."""

from __future__ import annotations

import threading
import time

from tests.support.inventory import NET, NET2, server

from cloudseed.cli.dataplane import wait_for_plane_change
from cloudseed.model import GuestAttribute
from cloudseed.store import SqlStore


def test_guest_attribute_writes_do_not_wake_the_watch_but_a_network_does(
    store: SqlStore,
) -> None:
    with store.write() as writer:
        writer.put_server(server(1))
        writer.put_network(NET)
    revision = store.revision()

    def guest_writes() -> None:
        for n in range(3):
            time.sleep(0.1)
            with store.write() as writer:
                attribute = GuestAttribute("srv-1", "ns", f"k{n}", "v", "")
                writer.put_guest_attribute(attribute, now=time.time())

    writes = threading.Thread(target=guest_writes)
    writes.start()
    started = time.monotonic()
    wait_for_plane_change(store, revision, 1.5)
    assert time.monotonic() - started >= 1.5  # waited through them, to the timeout
    writes.join()
    assert store.revision() == revision + 3  # the writes did happen meanwhile

    revision = store.revision()

    def operator_change() -> None:
        with store.write() as writer:
            writer.put_network(NET2)

    threading.Timer(0.1, operator_change).start()
    started = time.monotonic()
    wait_for_plane_change(store, revision, 60.0)
    assert time.monotonic() - started < 30.0  # at the change, not at the timeout
    assert store.revision() == revision + 1
