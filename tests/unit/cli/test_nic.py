"""``--nic`` grammar: each value is one NIC, or a message naming the bad part."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cloudseed.cli.nic import NO_NIC, parse_nic


@pytest.mark.parametrize(
    ("text", "nic"),
    [
        ("net-id=net1", {"network": "net1"}),
        (
            "net-id=n,v4-fixed-ip=10.0.0.5,v6-fixed-ip=fd00::5,mac=fa:16:3e:00:00:01,tag=a",
            {
                "network": "n",
                "fixed_ips": [{"ip_address": "10.0.0.5"}, {"ip_address": "fd00::5"}],
                "mac_address": "fa:16:3e:00:00:01",
                "tag": "a",
            },
        ),
        ("port-id=p1,tag=eth1", {"port": "p1", "tag": "eth1"}),
        ("port-id=p1,move=true", {"port": "p1", "move": True}),
        ("port-id=p1,move=False", {"port": "p1", "move": False}),
        (" none ", NO_NIC),
    ],
)
def test_nic_becomes_one_request_entry(text: str, nic: dict[str, Any]) -> None:
    assert parse_nic(text) == nic


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("net-id=net1,v4-fixed-ip=fd00:1::5", "v4-fixed-ip=fd00:1::5 is not an IPv4 address"),
        ("net-id=net1,v6-fixed-ip=10.0.0.5", "v6-fixed-ip=10.0.0.5 is not an IPv6 address"),
        ("net-id=net1,v4-fixed-ip=10.0.0", "v4-fixed-ip=10.0.0 is not an IP address"),
        ("net-id=net1,port-id=p1", "exactly one of net-id=NETWORK or port-id=PORT"),
        ("net-id=net1,move=true", "move= moves an existing port; it goes with port-id"),
        ("port-id=p1,move=yes", "move=yes: use move=true or move=false"),
        ("v4-fixed-ip=10.0.0.5", "exactly one of net-id=NETWORK or port-id=PORT"),
        ("port-id=p1,mac=fa:16:3e:00:00:01", "mac describe a new port"),
        ("net-id=net1,fixed-ip=10.0.0.5", "unknown part 'fixed-ip=10.0.0.5'"),
        ("net-id=net1,net-id=net2", "net-id given twice"),
        ("net-id=", "net-id needs a value"),
        ("auto", "name a network"),
    ],
)
def test_bad_nic_names_the_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_nic(text)
