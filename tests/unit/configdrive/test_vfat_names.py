from __future__ import annotations

import pytest

from cloudseed.configdrive.vfat_names import (
    ShortNames,
    long_name_entries,
    long_name_slots,
    short_name_checksum,
)


@pytest.mark.parametrize(
    ("name", "short", "needs_long"),
    [
        ("meta_data.json", b"META_D~1JSO", True),
        ("2012-08-10", b"2012-0~1   ", True),
        ("latest", b"LATEST     ", True),
        ("0000", b"0000       ", False),
        ("README.TXT", b"README  TXT", False),
        ("user-data", b"USER-D~1   ", True),
        ("hot+cold", b"HOT_CO~1   ", True),
        ("prn.txt", b"PRN~1   TXT", True),
        ("a.b.c", b"AB~1    C  ", True),
    ],
)
def test_short_names_follow_the_fat_rules(name: str, short: bytes, needs_long: bool) -> None:
    assert ShortNames().assign(name) == (short, needs_long)


def test_colliding_names_get_increasing_tails() -> None:
    names = ShortNames()
    assert names.assign("vendor_data.json")[0] == b"VENDOR~1JSO"
    assert names.assign("vendor_data2.json")[0] == b"VENDOR~2JSO"


def test_checksum_matches_the_specification_algorithm() -> None:
    # Rotate right by one bit, then add the next byte, over the 11 bytes.
    expected = 0
    for byte in b"META_D~1JSO":
        expected = ((expected >> 1) | ((expected & 1) << 7)) + byte
        expected &= 0xFF
    assert short_name_checksum(b"META_D~1JSO") == expected


def test_long_name_entries_hold_the_name_in_ucs2_last_part_first() -> None:
    name = "vendor_data2.json"  # 17 characters: two entries
    assert long_name_slots(name) == 2
    raw = long_name_entries(name, b"VENDOR~2JSO")
    first, second = raw[:32], raw[32:]
    assert first[0] == 0x42  # the last-entry flag is on the first stored
    assert second[0] == 0x01
    assert first[11] == second[11] == 0x0F

    def chars(entry: bytes) -> bytes:
        return entry[1:11] + entry[14:26] + entry[28:32]

    text = chars(second) + chars(first)
    assert text[: 2 * len(name)].decode("utf-16-le") == name
    assert text[2 * len(name) : 2 * len(name) + 2] == b"\x00\x00"
    assert set(text[2 * len(name) + 2 :]) == {0xFF}


def test_name_filling_its_last_entry_has_no_terminator() -> None:
    raw = long_name_entries("a" * 13, b"AAAAAA~1   ")
    assert len(raw) == 32
    assert b"\x00\x00" not in raw[1:11] + raw[14:26] + raw[28:32]
