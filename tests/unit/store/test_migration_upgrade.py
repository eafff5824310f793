"""Upgrades keep data: a store filled at the first released schema, walked
through every later revision to head, keeps every row it had.

The fixture is plain SQL against revision 0001's tables (which never change),
so it needs no code from any later revision; the walk asks Alembic for the
revisions, so migrations added later are covered without touching this test.
"""

from __future__ import annotations

from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import text
from tests.support.first_schema import FIRST_REVISION, FIXTURE, MOTD, USER_DATA, fill_first_schema

from cloudseed.model import EndpointState, Server, TokenPolicy
from cloudseed.store import open_store
from cloudseed.store.engine import create_store_engine
from cloudseed.store.migrate import alembic_config, head_revision, upgrade


def _revisions() -> list[str]:
    """Every revision from the first to head, oldest first (one head on main)."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _fixture_columns(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The fixture's tables, only the columns revision 0001 had, in key order."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            found: dict[str, list[tuple[Any, ...]]] = {}
            for table, rows in FIXTURE.items():
                columns = ", ".join(rows[0])
                query = text(f"SELECT {columns} FROM {table} ORDER BY {columns}")
                found[table] = [tuple(row) for row in conn.execute(query)]
            found["meta"] = [tuple(r) for r in conn.execute(text("SELECT id, revision FROM meta"))]
            return found
    finally:
        engine.dispose()


def test_every_revision_keeps_the_rows_of_the_first_schema(store_url: str) -> None:
    revisions = _revisions()
    assert revisions[0] == FIRST_REVISION
    assert revisions[-1] == head_revision()
    fill_first_schema(store_url)
    before = _fixture_columns(store_url)
    assert {table: len(rows) for table, rows in before.items() if table != "meta"} == {
        table: len(rows) for table, rows in FIXTURE.items()
    }
    for revision in revisions[1:]:
        upgrade(store_url, revision)
        assert _fixture_columns(store_url) == before, f"rows changed by migration {revision}"


def test_the_upgraded_store_serves_what_the_first_schema_held(store_url: str) -> None:
    fill_first_schema(store_url)
    upgrade(store_url)
    with open_store(store_url, upgrade=False) as store:
        assert store.revision() == 7
        vm1 = store.get_server("vm1")
        assert vm1.ec2_id == 41
        assert vm1.user_data == USER_DATA
        assert [(f.path, f.content) for f in vm1.files] == [("/etc/motd", MOTD)]
        assert dict(vm1.metadata) == {"role": "db"}
        assert vm1.imds.tokens is TokenPolicy.REQUIRED
        assert vm1.imds.endpoint is EndpointState.DISABLED
        assert vm1.created_at == "2024-05-01T12:00:00Z"
        assert store.get_password("srv-1") == "c2VjcmV0LXBhc3N3b3Jk"
        assert [p.id for p in store.list_ports(server_id="srv-1")] == ["port-1", "port-2"]
        port1 = store.get_port("port-1")
        assert [(ip.subnet_id, ip.ip_address) for ip in port1.fixed_ips] == [
            ("sub-1", "10.0.0.11"), ("sub-6", "fd00::11")]
        assert port1.floating_ip == "203.0.113.5"
        assert store.get_router("router1").subnet_ids == ("sub-1",)
        assert [c.id for c in store.changes_since(0)] == ["srv-1", "port-3"]
        # The next write continues the revision and the EC2 id sequences.
        with store.write() as writer:
            new = writer.put_server(
                Server(id="srv-3", name="vm3", hostname="vm3", project_id="proj-1")
            )
        assert new.ec2_id > 42
        assert store.revision() == 8
