"""The shared front's listener set: which namespace listens where, for which scope.

The data plane's plan writes it (``render_listener_set``, pure) into the
state directory; the front reads it at start and again on SIGHUP
(``parse_listener_set``) and opens or closes listeners to match. One entry
per scope: the namespace (its name under /run/netns), the router or network it serves
(the scope every request on those listeners carries), and its listen
addresses as ``cloudseed proxy --listen`` spells them.

The scope is bound to the listener here, by the operator's data plane; a
guest can reach a listener but never choose its entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from cloudseed.errors import ConfigError
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScopedListeners:
    namespace: str  # "" = the front's own namespace (tests, a flat host)
    scope: ProxyScope
    listen: tuple[str, ...]

    def addresses(self) -> list[ListenAddress]:
        return [ListenAddress.parse(text) for text in self.listen]


def render_listener_set(entries: Iterable[ScopedListeners]) -> str:
    """The file's text: sorted by namespace, so an unchanged plan writes the same bytes."""
    items = []
    for entry in sorted(entries, key=lambda e: e.namespace):
        kind, owner = (("router_id", entry.scope.router_id) if entry.scope.router_id
                       else ("network_id", entry.scope.network_id))
        items.append({"namespace": entry.namespace, kind: owner, "listen": list(entry.listen)})
    return json.dumps({"version": FORMAT_VERSION, "listeners": items}, indent=1) + "\n"


def parse_listener_set(text: str) -> list[ScopedListeners]:
    """Entries of a listener file; ConfigError names the entry and field that is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"listener file is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ConfigError(f"listener file: expected version {FORMAT_VERSION}")
    raw = data.get("listeners")
    if not isinstance(raw, list):
        raise ConfigError("listener file: 'listeners' must be a list")
    entries: list[ScopedListeners] = []
    scopes: set[ProxyScope] = set()
    for index, item in enumerate(raw):
        where = f"listener file: listeners[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be an object")
        namespace, listen = item.get("namespace", ""), item.get("listen")
        if not isinstance(namespace, str) or "/" in namespace or namespace in {".", ".."}:
            raise ConfigError(f"{where}.namespace is not a namespace name")
        if not isinstance(listen, list) or not listen or not all(
                isinstance(a, str) for a in listen):
            raise ConfigError(f"{where}.listen must be a non-empty list of ADDR:PORT")
        try:
            scope = ProxyScope(router_id=str(item.get("router_id") or ""),
                               network_id=str(item.get("network_id") or ""))
            for address in listen:
                ListenAddress.parse(address)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        # One scope, one entry: otherwise two namespaces' guests could be
        # served as the same router or network. (A namespace may hold several
        # scopes on distinct ports: the data plane never writes that, a test
        # on loopback does.)
        if scope in scopes:
            raise ConfigError(f"{where}: {scope.header[0]} {scope.header[1]} appears twice")
        scopes.add(scope)
        entries.append(ScopedListeners(namespace, scope, tuple(listen)))
    return entries


__all__ = ["ScopedListeners", "parse_listener_set", "render_listener_set"]
