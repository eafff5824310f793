import base64
import struct
from pathlib import Path

import pytest
from tests.support.keygen import (
    ssh_fingerprint_md5,
    ssh_public_key,
    x509_certificate,
    x509_sha1_fingerprint,
)

from cloudseed.control.keys import parse_public_key
from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.limits import MAX_PUBLIC_KEY_BYTES
from cloudseed.model import KeyType


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@pytest.mark.parametrize(
    ("key_type", "bits"), [("ed25519", None), ("rsa", 2048), ("ecdsa", 256), ("ecdsa", 384)]
)
def test_real_ssh_keys_are_accepted_with_the_md5_fingerprint_ssh_keygen_shows(
    tmp_path: Path, key_type: str, bits: int | None
) -> None:
    text = ssh_public_key(tmp_path, key_type, bits)
    normalised, fingerprint = parse_public_key(KeyType.SSH, text)
    assert normalised == text.strip()
    assert fingerprint == ssh_fingerprint_md5(tmp_path / f"id_{key_type}_{bits or 0}.pub")


def test_key_whose_blob_holds_another_type_is_refused(tmp_path: Path) -> None:
    _, blob, comment = ssh_public_key(tmp_path).split()
    with pytest.raises(Invalid, match="holds a 'ssh-ed25519' key") as err:
        parse_public_key(KeyType.SSH, f"ssh-rsa {blob} {comment}")
    assert err.value.field == "public_key"


def test_truncated_key_is_refused(tmp_path: Path) -> None:
    _, blob, _ = ssh_public_key(tmp_path).split()
    short = base64.b64encode(base64.b64decode(blob)[:-5]).decode()
    with pytest.raises(Invalid, match="truncated"):
        parse_public_key(KeyType.SSH, f"ssh-ed25519 {short}")


def test_unknown_key_type_names_the_supported_ones() -> None:
    with pytest.raises(Invalid, match="ssh-ed25519"):
        parse_public_key(KeyType.SSH, "ssh-dss AAAAB3NzaC1kc3M=")


def test_not_base64_is_refused() -> None:
    with pytest.raises(Invalid, match="base64"):
        parse_public_key(KeyType.SSH, "ssh-ed25519 not*base64")


def test_short_rsa_key_is_refused() -> None:
    blob = (
        _ssh_string(b"ssh-rsa") + _ssh_string(b"\x01\x00\x01") + _ssh_string(b"\x00" + b"\xff" * 64)
    )
    text = "ssh-rsa " + base64.b64encode(blob).decode()
    with pytest.raises(Invalid, match="512 bits"):
        parse_public_key(KeyType.SSH, text)


def test_ed25519_key_of_wrong_length_is_refused() -> None:
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(b"\x01" * 31)
    with pytest.raises(Invalid, match="32 bytes"):
        parse_public_key(KeyType.SSH, "ssh-ed25519 " + base64.b64encode(blob).decode())


def test_oversized_key_is_over_the_limit() -> None:
    with pytest.raises(LimitExceeded) as err:
        parse_public_key(KeyType.SSH, "ssh-rsa " + "A" * MAX_PUBLIC_KEY_BYTES)
    assert err.value.limit == MAX_PUBLIC_KEY_BYTES


def test_x509_certificate_gets_nova_sha1_fingerprint(tmp_path: Path) -> None:
    pem = x509_certificate(tmp_path)
    normalised, fingerprint = parse_public_key(KeyType.X509, pem)
    assert normalised.startswith("-----BEGIN CERTIFICATE-----")
    assert fingerprint == x509_sha1_fingerprint(tmp_path)


def test_x509_without_pem_armour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="PEM certificate"):
        parse_public_key(KeyType.X509, ssh_public_key(tmp_path))
