"""Reading domains and networks through the libvirt API (libvirt-python).

Read-only: cloudseed never changes a domain or a network, so it opens the
connection with ``openReadOnly`` and needs no write access to libvirtd.
libvirt-python is an optional dependency: only ``cloudseed libvirt sync``
(and ``import`` without ``--network-xml``) imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloudseed.errors import ConfigError
from cloudseed.libvirt.xml import Domain, LibvirtNetwork, parse_domain, parse_network


@dataclass
class LibvirtReader:
    """Domains and networks of one libvirt connection (``uri``)."""

    uri: str
    _conn: Any = None

    def __enter__(self) -> LibvirtReader:
        libvirt = _libvirt_module()
        try:
            self._conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise ConfigError(
                f"cannot connect to libvirt at {self.uri}: {exc}; set libvirt.uri "
                "(or --uri) and check that libvirtd runs and this user may read it"
            ) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def domains(self) -> list[Domain]:
        """Every defined domain, running or not, ordered by name."""
        found = [parse_domain(d.XMLDesc(0), f"domain {d.name()}")
                 for d in self._conn.listAllDomains(0)]
        return sorted(found, key=lambda d: d.name)

    def networks(self, names: Iterable[str]) -> dict[str, LibvirtNetwork]:
        """The named libvirt networks that exist (others are left out)."""
        libvirt = _libvirt_module()
        found: dict[str, LibvirtNetwork] = {}
        for name in set(names):
            try:
                network = self._conn.networkLookupByName(name)
            except libvirt.libvirtError:
                continue
            found[name] = parse_network(network.XMLDesc(0), f"network {name}")
        return found

    def all_networks(self) -> dict[str, LibvirtNetwork]:
        return {
            n.name(): parse_network(n.XMLDesc(0), f"network {n.name()}")
            for n in self._conn.listAllNetworks(0)
        }


def _libvirt_module() -> Any:
    try:
        import libvirt
    except ImportError:
        raise ConfigError(
            "libvirt-python is not installed; install it (pip install libvirt-python, "
            "or apt install python3-libvirt for the system Python)"
        ) from None
    # libvirt prints every error to stderr by default; ours carry the message instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt
