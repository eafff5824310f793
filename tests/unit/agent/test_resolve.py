"""Guest addresses as the agent reads them."""

from __future__ import annotations

import ipaddress

import pytest

from cloudseed.agent.resolve import eui64_mac, parse_source
from cloudseed.errors import Invalid


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.5", "10.0.0.5"), (" 10.0.0.5 ", "10.0.0.5"), ("::ffff:10.0.0.5", "10.0.0.5"),
     ("FD00::5", "fd00::5"), ("fe80::1%tap0", "fe80::1"), ("[fd00::5]", "fd00::5")],
)
def test_sources_are_normalised(text: str, expected: str) -> None:
    assert str(parse_source(text)) == expected


@pytest.mark.parametrize("text", ["", "10.0.0.5, 10.0.0.6", "host.example", "10.0.0.256"])
def test_bad_sources_are_invalid(text: str) -> None:
    with pytest.raises(Invalid):
        parse_source(text)


def test_eui64_link_local_gives_its_mac() -> None:
    assert eui64_mac(ipaddress.ip_address("fe80::f816:3eff:feaa:bbcc")) == "fa:16:3e:aa:bb:cc"


@pytest.mark.parametrize("text", ["fe80::1234", "fd00::f816:3eff:feaa:bbcc", "10.0.0.5"])
def test_non_eui64_or_non_link_local_gives_no_mac(text: str) -> None:
    assert eui64_mac(ipaddress.ip_address(text)) is None
