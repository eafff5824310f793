"""The agent's resolution cache, invalidated by the store's change feed.

Neutron's agent once cached port lookups with a TTL and served a previous
instance's id when a port was reused (LP#1868867), then dropped the cache
altogether. Here every entry — answers and "not found" alike — is indexed by
everything that could change it: the port it found, the server it named, the
networks it searched, each (network, address) it searched, and the router
whose networks it used. A change in the feed drops exactly the entries that
could depend on it; the next request reads the store again.

A lookup runs in a worker thread while the feed moves on; an entry whose
lookup started before an invalidation was applied is not stored (``epoch``),
because it may describe the world before that change.

Only the event-loop thread touches this object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cloudseed.agent.resolve import Outcome, Scope, ScopeKind
from cloudseed.errors import NotFound
from cloudseed.store.protocol import Change, ChangeOp, EntityKind, Reader

# Each entry is a few hundred bytes; a million-guest host would still fit.
# Past this (a guest spraying source addresses) the cache starts over.
MAX_CACHE_ENTRIES = 200_000

Key = tuple[str, str, str]  # scope kind, scope id, address


@dataclass
class Invalidation:
    """What one batch of changes makes stale."""

    port_ids: set[str] = field(default_factory=set)
    server_ids: set[str] = field(default_factory=set)
    router_ids: set[str] = field(default_factory=set)
    network_ids: set[str] = field(default_factory=set)
    # (network id, address or "mac:<mac>") that a port now holds.
    addresses: set[tuple[str, str]] = field(default_factory=set)
    all_routers: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.port_ids
            or self.server_ids
            or self.router_ids
            or self.network_ids
            or self.addresses
            or self.all_routers
        )


def invalidation_for(changes: Sequence[Change], reader: Reader) -> Invalidation:
    """Turn feed changes into cache drops. Reads the *new* state of changed ports.

    The old state of a port needs no read: entries that found it are indexed
    by its id. Its new addresses do: a "not found" for that address, or an
    answer naming another port, is now wrong.
    """
    inv = Invalidation()
    for change in changes:
        if change.kind is EntityKind.PORT:
            inv.port_ids.add(change.id)
            if change.op is not ChangeOp.DELETE:
                _add_port_addresses(inv, reader, change.id)
        elif change.kind is EntityKind.SERVER:
            inv.server_ids.add(change.id)
        elif change.op is ChangeOp.TOUCH:
            # The store touches a port's network and routers whenever the
            # port changes; the port's own change above is the precise
            # signal, so a touch of them would only flush good entries.
            continue
        elif change.kind is EntityKind.ROUTER:
            inv.router_ids.add(change.id)
        elif change.kind is EntityKind.SUBNET:
            # A subnet moving between routers or networks is rare; recompute
            # every router's networks rather than track subnet ownership.
            inv.all_routers = True
        elif change.kind is EntityKind.NETWORK:
            inv.network_ids.add(change.id)
            inv.all_routers = True
    return inv



def _add_port_addresses(inv: Invalidation, reader: Reader, port_id: str) -> None:
    try:
        port = reader.get_port(port_id)
    except NotFound:
        return
    for fixed in port.fixed_ips:
        inv.addresses.add((port.network_id, fixed.ip_address))
    inv.addresses.add((port.network_id, f"mac:{port.mac_address.lower()}"))


class ResolutionCache:
    def __init__(self, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self.epoch = 0
        self._entries: dict[Key, Outcome] = {}
        self._by_port: defaultdict[str, set[Key]] = defaultdict(set)
        self._by_server: defaultdict[str, set[Key]] = defaultdict(set)
        self._by_router: defaultdict[str, set[Key]] = defaultdict(set)
        self._by_network: defaultdict[str, set[Key]] = defaultdict(set)
        self._by_address: defaultdict[tuple[str, str], set[Key]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, scope: Scope, address: str) -> Outcome | None:
        return self._entries.get((scope.kind.value, scope.id, address))

    def put(self, scope: Scope, address: str, outcome: Outcome, started_epoch: int) -> bool:
        """Store a lookup's outcome unless an invalidation happened while it ran."""
        if started_epoch != self.epoch:
            return False
        if len(self._entries) >= self.max_entries:
            self.clear()
        key: Key = (scope.kind.value, scope.id, address)
        self._entries[key] = outcome
        if scope.kind is ScopeKind.ROUTER:
            self._by_router[scope.id].add(key)
        for network_id in outcome.network_ids:
            self._by_network[network_id].add(key)
            self._by_address[(network_id, address)].add(key)
            if outcome.mac is not None:
                self._by_address[(network_id, f"mac:{outcome.mac}")].add(key)
        if outcome.identity is not None:
            self._by_port[outcome.identity.port_id].add(key)
            self._by_server[outcome.identity.server_id].add(key)
        return True

    def apply(self, inv: Invalidation) -> int:
        """Drop what ``inv`` makes stale; returns how many entries went."""
        self.epoch += 1
        doomed: set[Key] = set()
        doomed |= _take(self._by_port, inv.port_ids)
        doomed |= _take(self._by_server, inv.server_ids)
        doomed |= _take(self._by_router, inv.router_ids)
        doomed |= _take(self._by_network, inv.network_ids)
        doomed |= _take(self._by_address, inv.addresses)
        if inv.all_routers:
            doomed |= _take(self._by_router, list(self._by_router))
        dropped = 0
        for key in doomed:
            if self._entries.pop(key, None) is not None:
                dropped += 1
        return dropped

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
        for index in (
            self._by_port,
            self._by_server,
            self._by_router,
            self._by_network,
            self._by_address,
        ):
            index.clear()


_K = TypeVar("_K")


def _take(index: defaultdict[_K, set[Key]], keys: Iterable[_K]) -> set[Key]:
    taken: set[Key] = set()
    for key in keys:
        taken |= index.pop(key, set())
    return taken
