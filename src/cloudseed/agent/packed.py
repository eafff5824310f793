"""Compact containers for the address map: a million entries in tens of megabytes.

A Python dict costs ~100 bytes per int → int entry and a str id ~85 bytes
(anchored in docs/DECISIONS.md, "Agent address map"); at a million ports
that alone would break the agent's 256 MiB budget. So the map keeps:

* ``Int64Table`` -- open addressing with linear probing over two ``array``s
  (8-byte keys, 4-byte values): ~12 bytes per slot, 17-34 per entry at its
  load factor, O(1) inserts and deletes (the feed updates it in place);
* ``IdColumn`` -- ids by slot, 16 bytes each when the id is a canonical
  UUID (what Nova, Neutron and our own import assign), kept as text only for
  the rare id that is not.

Both are owned by one thread (the agent's event loop).
"""

from __future__ import annotations

import re
from array import array

MASK64 = (1 << 64) - 1
EMPTY = 0  # a key no caller uses
DELETED = MASK64  # a tombstone: probing continues past it
# Fibonacci hashing: multiplying spreads sequential keys (addresses) evenly.
_GOLDEN = 0x9E3779B97F4A7C15
MIN_BITS = 10
# Grow past 70 % occupancy (tombstones count), rebuilt to at most 35 %.
MAX_LOAD = 0.70

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def id_key(text: str) -> int:
    """A 64-bit table key for an id string (callers verify: two ids may share one)."""
    key = hash(text) & MASK64
    return key if key not in (EMPTY, DELETED) else 1


class Int64Table:
    """Keys in 1 .. 2**64-2 → values in 0 .. 2**32-1."""

    def __init__(self, expected: int = 0) -> None:
        bits = MIN_BITS
        while (1 << bits) * MAX_LOAD < expected:
            bits += 1
        self._reset(bits)

    def _reset(self, bits: int) -> None:
        self._bits = bits
        self._mask = (1 << bits) - 1
        self._shift = 64 - bits
        # Repeat, not array(bytes(...)): a freed temporary of that size would raise
        # glibc's mmap threshold, and the growing columns would then fragment the heap.
        self._keys = array("Q", [EMPTY]) * (1 << bits)
        self._values = array("I", [0]) * (1 << bits)
        self._live = 0
        self._used = 0  # live + tombstones

    def __len__(self) -> int:
        return self._live

    def nbytes(self) -> int:
        return len(self._keys) * 12

    def get(self, key: int) -> int:
        """The value for ``key``, or -1."""
        keys, mask = self._keys, self._mask
        i = ((key * _GOLDEN) & MASK64) >> self._shift
        while True:
            found = keys[i]
            if found == key:
                return self._values[i]
            if found == EMPTY:
                return -1
            i = (i + 1) & mask

    def put(self, key: int, value: int) -> None:
        keys, mask = self._keys, self._mask
        i = ((key * _GOLDEN) & MASK64) >> self._shift
        free = -1
        while True:
            found = keys[i]
            if found == key:
                self._values[i] = value
                return
            if found == EMPTY:
                break
            if found == DELETED and free < 0:
                free = i
            i = (i + 1) & mask
        if free >= 0:
            i = free  # reuse the tombstone: occupancy does not grow
        else:
            self._used += 1
        keys[i] = key
        self._values[i] = value
        self._live += 1
        if self._used > MAX_LOAD * (mask + 1):
            self._rehash()

    def pop_if(self, key: int, value: int) -> bool:
        """Remove ``key`` if it maps to ``value`` (so a newer owner is never removed)."""
        keys, mask = self._keys, self._mask
        i = ((key * _GOLDEN) & MASK64) >> self._shift
        while True:
            found = keys[i]
            if found == key:
                if self._values[i] != value:
                    return False
                keys[i] = DELETED
                self._live -= 1
                return True
            if found == EMPTY:
                return False
            i = (i + 1) & mask

    def _rehash(self) -> None:
        old_keys, old_values = self._keys, self._values
        bits = MIN_BITS
        while (1 << bits) * MAX_LOAD / 2 < self._live:
            bits += 1
        self._reset(bits)
        for i, key in enumerate(old_keys):
            if key not in (EMPTY, DELETED):
                self.put(key, old_values[i])


class IdColumn:
    """Strings by slot: a canonical UUID in 16 bytes, anything else as text."""

    def __init__(self) -> None:
        self._packed = bytearray()
        self._text: dict[int, str] = {}

    def nbytes(self) -> int:
        return len(self._packed)

    def set(self, slot: int, value: str) -> None:
        """Slots are dense: ``slot`` is an existing one or the next."""
        end = (slot + 1) * 16
        if len(self._packed) < end:
            self._packed.extend(bytes(end - len(self._packed)))
        if _UUID.fullmatch(value):
            self._packed[slot * 16:end] = bytes.fromhex(value.replace("-", ""))
            self._text.pop(slot, None)
        else:
            self._text[slot] = value

    def get(self, slot: int) -> str:
        text = self._text.get(slot)
        if text is not None:
            return text
        h = self._packed[slot * 16:(slot + 1) * 16].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def matches(self, slot: int, value: str) -> bool:
        return self.get(slot) == value
