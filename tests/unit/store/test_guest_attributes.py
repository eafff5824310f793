"""Guest attributes in the store: one budget and one key count per server, whoever writes."""

from __future__ import annotations

import pytest
from tests.support.inventory import server

from cloudseed.errors import LimitExceeded, NotFound, RateLimited
from cloudseed.limits import (
    GUEST_ATTRIBUTE_WRITE_BURST,
    GUEST_ATTRIBUTE_WRITES_PER_MINUTE,
    MAX_GUEST_ATTRIBUTES,
)
from cloudseed.model import GuestAttribute
from cloudseed.store import SqlStore
from cloudseed.store.protocol import ChangeOp, EntityKind
from cloudseed.store.rules import spend_guest_write

REFILL = 60 / GUEST_ATTRIBUTE_WRITES_PER_MINUTE


def _put(store: SqlStore, server_id: str, name: str, now: float, value: str = "v") -> None:
    namespace, key = name.split("/")
    with store.write() as writer:
        writer.put_guest_attribute(GuestAttribute(server_id, namespace, key, value, ""), now=now)


def test_the_budget_refills_at_the_rate_up_to_the_burst() -> None:
    tokens = None
    for _ in range(GUEST_ATTRIBUTE_WRITE_BURST):
        tokens = spend_guest_write(tokens, 0.0, 0.0)
    assert tokens == 0
    with pytest.raises(RateLimited) as refused:
        spend_guest_write(tokens, 0.0, REFILL / 2)
    assert refused.value.retry_after_seconds == round(REFILL / 2)
    assert spend_guest_write(tokens, 0.0, REFILL) == 0
    # An idle day refills to the burst, not beyond.
    assert spend_guest_write(0.0, 0.0, 86400.0) == GUEST_ATTRIBUTE_WRITE_BURST - 1


def test_writes_are_a_change_of_their_own_kind_not_a_server_touch(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_server(server(1))
    before = store.revision()
    _put(store, "srv-1", "ns/k", 0.0)
    changes = store.changes_since(before)
    assert [(c.kind, c.id, c.op) for c in changes] == [
        (EntityKind.GUEST_ATTRIBUTES, "srv-1", ChangeOp.PUT)]


def test_budget_and_key_count_are_per_server_and_shared_by_every_writer(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_server(server(1))
        writer.put_server(server(2))
    for n in range(GUEST_ATTRIBUTE_WRITE_BURST):
        _put(store, "srv-1", f"ns{n % 2}/k{n}", 0.0)
    with pytest.raises(RateLimited):
        _put(store, "srv-1", "ns/late", 0.0)
    with store.write() as writer, pytest.raises(RateLimited):  # a guest DELETE spends too
        writer.delete_guest_attribute("srv-1", "ns0", "k0", now=0.0)
    _put(store, "srv-2", "ns/k", 0.0)  # another server has its own budget
    # The operator's clear spends nothing and needs no budget.
    with store.write() as writer:
        assert writer.delete_guest_attribute("srv-1", "ns0", "k0", now=None)
    now = 0.0
    for n in range(GUEST_ATTRIBUTE_WRITE_BURST, MAX_GUEST_ATTRIBUTES + 1):
        now += REFILL
        _put(store, "srv-1", f"other/k{n}", now)
    now += REFILL
    with pytest.raises(LimitExceeded) as full:
        _put(store, "srv-1", "more/k", now)
    assert full.value.limit == MAX_GUEST_ATTRIBUTES
    assert len(store.list_guest_attributes("srv-1")) == MAX_GUEST_ATTRIBUTES


def test_deleting_the_server_deletes_its_attributes(store: SqlStore) -> None:
    with store.write() as writer:
        writer.put_server(server(1))
    _put(store, "srv-1", "ns/k", 0.0)
    with store.write() as writer:
        writer.delete_server("srv-1")
    assert store.list_guest_attributes("srv-1") == []
    with store.write() as writer:  # a new server of the same id starts clean
        writer.put_server(server(1))
    for n in range(GUEST_ATTRIBUTE_WRITE_BURST):
        _put(store, "srv-1", f"ns/k{n}", 0.0)
    with pytest.raises(NotFound), store.write() as writer:
        writer.put_guest_attribute(GuestAttribute("srv-9", "ns", "k", "v", ""), now=0.0)
