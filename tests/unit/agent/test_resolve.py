"""Guest addresses as the agent reads them, and the cache's bookkeeping."""

from __future__ import annotations

import ipaddress

import pytest

from cloudseed.agent.cache import Invalidation, ResolutionCache
from cloudseed.agent.resolve import Identity, Outcome, Scope, ScopeKind, eui64_mac, parse_source
from cloudseed.errors import Invalid, NotFound


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


SCOPE = Scope(ScopeKind.ROUTER, "rtr-1")
FOUND = Outcome(Identity("srv-1", "proj", "port-1"), None, ("net-1", "net-2"), None)
MISSING = Outcome(None, NotFound("port", "10.0.0.9"), ("net-1",), "fa:16:3e:00:00:01")


@pytest.mark.parametrize(
    ("invalidation", "dropped"),
    [
        (Invalidation(port_ids={"port-1"}), {"found"}),
        (Invalidation(server_ids={"srv-1"}), {"found"}),
        (Invalidation(router_ids={"rtr-1"}), {"found", "missing"}),
        (Invalidation(network_ids={"net-2"}), {"found"}),
        (Invalidation(addresses={("net-1", "10.0.0.9")}), {"missing"}),
        (Invalidation(addresses={("net-1", "mac:fa:16:3e:00:00:01")}), {"missing"}),
        (Invalidation(addresses={("net-3", "10.0.0.5")}), set()),
        (Invalidation(all_routers=True), {"found", "missing"}),
        (Invalidation(port_ids={"port-9"}, server_ids={"srv-9"}), set()),
    ],
)
def test_invalidation_drops_exactly_the_dependent_entries(
    invalidation: Invalidation, dropped: set[str]
) -> None:
    cache = ResolutionCache()
    assert cache.put(SCOPE, "10.0.0.5", FOUND, cache.epoch)
    assert cache.put(SCOPE, "10.0.0.9", MISSING, cache.epoch)
    cache.apply(invalidation)
    gone = {name for name, ip in (("found", "10.0.0.5"), ("missing", "10.0.0.9"))
            if cache.get(SCOPE, ip) is None}
    assert gone == dropped


def test_lookup_that_raced_an_invalidation_is_not_cached() -> None:
    cache = ResolutionCache()
    started = cache.epoch
    cache.apply(Invalidation(port_ids={"port-1"}))
    assert not cache.put(SCOPE, "10.0.0.5", FOUND, started)
    assert cache.get(SCOPE, "10.0.0.5") is None


def test_cache_starts_over_when_full() -> None:
    cache = ResolutionCache(max_entries=2)
    for i in range(3):
        cache.put(SCOPE, f"10.0.0.{i}", FOUND, cache.epoch)
    assert len(cache) == 1
