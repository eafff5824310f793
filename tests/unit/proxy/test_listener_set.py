"""The shared front's listener file: what the data plane writes, what the front accepts."""

from __future__ import annotations

import json

import pytest

from cloudseed.errors import ConfigError
from cloudseed.proxy.listener_set import (
    ScopedListeners,
    parse_listener_set,
    render_listener_set,
)
from cloudseed.proxy.relay import ProxyScope

ENTRIES = [
    ScopedListeners("cs-qrouter-r1", ProxyScope(router_id="r1"), ("[::]:9697",)),
    ScopedListeners("cs-qdhcp-n1", ProxyScope(network_id="n1"),
                    ("169.254.169.254:80", "[fe80::a9fe:a9fe%ns-1]:80")),
]


def test_round_trip_keeps_every_entry_sorted_by_namespace() -> None:
    text = render_listener_set(ENTRIES)
    assert parse_listener_set(text) == sorted(ENTRIES, key=lambda e: e.namespace)
    assert render_listener_set(reversed(ENTRIES)) == text


def _with(**changes: object) -> str:
    item = {"namespace": "ns", "router_id": "r1", "listen": ["0.0.0.0:9697"], **changes}
    return json.dumps({"version": 1, "listeners": [item]})


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("{", "not JSON"),
        (json.dumps({"version": 2, "listeners": []}), "version 1"),
        (json.dumps({"version": 1, "listeners": {}}), "'listeners' must be a list"),
        (_with(namespace="../etc"), "listeners[0].namespace"),
        (_with(listen=[]), "listeners[0].listen"),
        (_with(listen=["nowhere"]), "listeners[0]: --listen 'nowhere'"),
        (_with(network_id="n1"), "listeners[0]: a proxy serves exactly one router"),
        (_with(router_id="r 1"), "listeners[0]: 'r 1' is not a valid id"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listener_set(text)
    assert names in caught.value.message


def test_one_scope_may_not_be_served_in_two_namespaces() -> None:
    twice = [ScopedListeners("ns-a", ProxyScope(router_id="r1"), ("0.0.0.0:9697",)),
             ScopedListeners("ns-b", ProxyScope(router_id="r1"), ("0.0.0.0:9697",))]
    with pytest.raises(ConfigError) as caught:
        parse_listener_set(render_listener_set(twice))
    assert "X-Neutron-Router-ID r1 appears twice" in caught.value.message
