"""The address map's compact containers against plain dicts."""

from __future__ import annotations

import random

import pytest

from cloudseed.agent.packed import DELETED, IdColumn, Int64Table, id_key


def test_int64_table_agrees_with_a_dict_through_growth_and_tombstones() -> None:
    rng = random.Random(17)
    table, reference = Int64Table(), {}
    # Clustered keys (addresses of one network) and keys whose low bits agree.
    keys = [(1 << 32) | rng.randrange(5000) for _ in range(3000)]
    keys += [rng.randrange(1, 1 << 20) << 40 for _ in range(3000)]
    for step in range(40_000):
        key = rng.choice(keys)
        if rng.random() < 0.6:
            value = rng.randrange(1 << 32)
            table.put(key, value)
            reference[key] = value
        else:
            wrong = reference.get(key, 0) + 1  # a stale owner never removes the entry
            assert not table.pop_if(key, wrong) or key not in reference
            if key in reference and table.pop_if(key, reference[key]):
                del reference[key]
        if step % 5000 == 0:
            assert len(table) == len(reference)
            assert all(table.get(k) == reference.get(k, -1) for k in keys)
    assert len(table) == len(reference)
    assert all(table.get(k) == reference.get(k, -1) for k in keys)


def test_int64_table_sized_for_what_it_expects() -> None:
    table = Int64Table(expected=100_000)
    before = table.nbytes()
    for key in range(1, 100_001):
        table.put(key, key)
    assert table.nbytes() == before  # no rehash while filling what was expected
    assert table.nbytes() / len(table) < 40


def test_id_key_never_uses_the_reserved_keys() -> None:
    assert all(id_key(f"port-{i}") not in (0, DELETED) for i in range(1000))


@pytest.mark.parametrize("value", [
    "0a0a0a0a-0000-4000-8000-00000000000a",  # packed
    "0A0A0A0A-0000-4000-8000-00000000000A",  # a UUID, but not canonical: kept as written
    "port-a", "", "x" * 64,
])
def test_id_column_gives_back_exactly_what_it_was_given(value: str) -> None:
    column = IdColumn()
    column.set(0, "11111111-2222-4333-8444-555555555555")
    column.set(1, value)
    column.set(2, "srv-z")
    assert [column.get(i) for i in range(3)] == [
        "11111111-2222-4333-8444-555555555555", value, "srv-z"]
    column.set(1, "22222222-2222-4333-8444-555555555555")  # text → packed in place
    assert column.get(1) == "22222222-2222-4333-8444-555555555555"
    assert column.matches(2, "srv-z")
    assert not column.matches(2, "srv-y")
