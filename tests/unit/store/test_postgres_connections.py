"""PostgreSQL only: the store survives its connections being cut (a database
restart, a failover, an idle-connection reaper)."""

from __future__ import annotations

import psycopg

from cloudseed.model import Network
from cloudseed.store import open_store


def _cut_every_connection_but_this_one(url: str) -> int:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert cut is not None
    return int(cut[0])


def test_reads_and_writes_recover_after_connections_are_cut(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        with store.write() as writer:
            writer.put_network(Network("n1", "net1"))
        assert store.wait_for_change(0, timeout_seconds=0) == 1  # opens the LISTEN connection
        assert _cut_every_connection_but_this_one(postgres_url) >= 1
        assert store.get_network("net1") == Network("n1", "net1")
        with store.write() as writer:
            writer.put_network(Network("n2", "net2"))
        assert store.wait_for_change(1, timeout_seconds=5) == 2


def test_a_write_recovers_after_connections_are_cut(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        with store.write() as writer:
            writer.put_network(Network("n1", "net1"))
        _cut_every_connection_but_this_one(postgres_url)
        with store.write() as writer:
            writer.put_network(Network("n2", "net2"))
        assert [n.id for n in store.list_networks()] == ["n1", "n2"]
