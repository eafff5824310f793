from __future__ import annotations

import base64
import hashlib

import pytest

from cloudseed.configdrive.seed import drive_seed, random_seed_b64
from cloudseed.errors import ConfigError
from cloudseed.render import RANDOM_SEED_BYTES

KEY = b"operator-secret"
DIGEST = hashlib.sha256(b"drive content").digest()


def test_seed_is_the_same_for_the_same_server_and_content() -> None:
    assert drive_seed(KEY, "srv", DIGEST) == drive_seed(KEY, "srv", DIGEST)


@pytest.mark.parametrize(
    ("key", "server_id", "digest"),
    [
        (b"other-secret", "srv", DIGEST),
        (KEY, "srv2", DIGEST),
        (KEY, "srv", hashlib.sha256(b"other content").digest()),
    ],
)
def test_seed_changes_with_key_server_or_content(key: bytes, server_id: str, digest: bytes) -> None:
    assert drive_seed(key, server_id, digest) != drive_seed(KEY, "srv", DIGEST)


def test_server_id_and_digest_cannot_be_shifted_into_each_other() -> None:
    assert drive_seed(KEY, "srv", b"1" + DIGEST[1:]) != drive_seed(KEY, "srv1", DIGEST[1:])


def test_empty_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"configdrive\.seed_key"):
        drive_seed(b"", "srv", DIGEST)


def test_random_seed_is_512_bytes_of_base64_like_nova() -> None:
    encoded = random_seed_b64(drive_seed(KEY, "srv", DIGEST))
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == RANDOM_SEED_BYTES == 512
    assert len(set(raw)) > 200  # looks random, not a repeated pattern


def test_random_seed_is_deterministic_and_depends_on_the_seed() -> None:
    one = drive_seed(KEY, "srv", DIGEST)
    assert random_seed_b64(one) == random_seed_b64(one)
    assert random_seed_b64(one) != random_seed_b64(drive_seed(KEY, "srv2", DIGEST))
