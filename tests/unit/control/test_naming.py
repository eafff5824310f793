import pytest

from cloudseed.control.naming import check_hostname, hostname_from_name
from cloudseed.errors import Invalid, LimitExceeded
from cloudseed.limits import MAX_HOSTNAME_CHARS, MAX_HOSTNAME_LABEL_CHARS

SERVER_ID = "8d1f8b0c-9d3f-4a53-9e1e-2f1f0c6d4b7a"


@pytest.mark.parametrize(
    ("name", "hostname"),
    [
        ("web-1", "web-1"),
        ("Web Server_2.prod", "web-server-2-prod"),
        ("--db!!--", "db"),
        ("caf\u00e9 \u00fcber", "caf-ber"),
        ("x" * 80, "x" * MAX_HOSTNAME_LABEL_CHARS),
    ],
)
def test_hostname_is_derived_from_the_name_like_nova(name: str, hostname: str) -> None:
    assert hostname_from_name(name, SERVER_ID) == hostname


def test_name_without_usable_characters_falls_back_to_the_server_id() -> None:
    assert hostname_from_name("!!!", SERVER_ID) == f"server-{SERVER_ID}"[:MAX_HOSTNAME_LABEL_CHARS]


@pytest.mark.parametrize("hostname", ["web-1", "Web1.Example.COM", "a", "a" * 63])
def test_rfc1123_hostnames_are_accepted_lower_cased(hostname: str) -> None:
    assert check_hostname(hostname) == hostname.lower()


@pytest.mark.parametrize("hostname", ["-web", "web-", "we_b", "a..b", "web 1"])
def test_non_rfc1123_hostnames_are_refused(hostname: str) -> None:
    with pytest.raises(Invalid, match="RFC 1123"):
        check_hostname(hostname)


def test_long_label_and_long_name_are_over_the_limits() -> None:
    with pytest.raises(LimitExceeded) as label:
        check_hostname("a" * 64)
    assert label.value.limit == MAX_HOSTNAME_LABEL_CHARS
    with pytest.raises(LimitExceeded) as whole:
        check_hostname(".".join(["a" * 60] * 5))
    assert whole.value.limit == MAX_HOSTNAME_CHARS
