"""The vocabulary of the data plane: the inventory in, the desired objects out, their names.

``plan`` fills these in; ``reconcile`` compares them with the host. Every
kernel object the data plane creates is named here, from one prefix, so
``teardown`` can find exactly what is ours and nothing else.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cloudseed.errors import ConfigError
from cloudseed.model import Network, Port, Router, Server, Subnet
from cloudseed.settings import FrontAnswers, ProxyImplementation, ProxySettings, Settings

# Link names are at most 15 bytes (IFNAMSIZ - 1): a 4-byte role prefix and a
# 10-hex-digit hash of the owner ids.
LINK_HASH_CHARS = 10
BRIDGE_PREFIX = "csb-"
ROUTER_OUTER_PREFIX = "csr-"
DHCP_OUTER_PREFIX = "csd-"
GUEST_OUTER_PREFIX = "csg-"
OUTER_LINK_PREFIXES = (BRIDGE_PREFIX, ROUTER_OUTER_PREFIX, DHCP_OUTER_PREFIX, GUEST_OUTER_PREFIX)
# Locally administered, unicast; Neutron's base is fa:16:3e.
MAC_PREFIX = "fa:16:3f"


class NamespaceKind(StrEnum):
    ROUTER = "router"
    DHCP = "dhcp"


class ProcessKind(StrEnum):
    DNSMASQ = "dnsmasq"
    PROXY = "proxy"


@dataclass(frozen=True, slots=True)
class Inventory:
    networks: tuple[Network, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    routers: tuple[Router, ...] = ()
    ports: tuple[Port, ...] = ()
    servers: tuple[Server, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanContext:
    """The settings the plan depends on, resolved to plain values.

    Built from the settings object by ``from_settings``; the defaults here serve
    tests that build a context by hand, and are the settings' own defaults.
    """

    state_dir: str
    root_netns: str = ""
    force_metadata: bool = False
    enable_isolated_metadata: bool = True
    router_proxy_port: int = 9697
    dns_domain: str = "openstacklocal"
    dhcp_lease_seconds: int = 86400
    proxy_implementation: ProxyImplementation = ProxyImplementation.BUILTIN
    front_answers: FrontAnswers = FrontAnswers.RELAY
    cloudseed_command: tuple[str, ...] = ("cloudseed",)
    agent_socket: str = "/run/cloudseed/metadata_proxy"
    proxy_settings: ProxySettings = field(default_factory=ProxySettings)
    # dnsmasq's --user: whoever writes its files (see dataplane/dhcp.py).
    dnsmasq_user: str = "root"

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanContext:
        dp = settings.dataplane
        if (dp.front_answers is FrontAnswers.CO_LOCATED
                and dp.proxy_implementation is not ProxyImplementation.SHARED):
            raise ConfigError("dataplane.front_answers = 'co-located' needs "
                              "dataplane.proxy_implementation = 'shared' (one front answers "
                              "every namespace); set both, or front_answers = 'relay'")
        return cls(
            state_dir=dp.state_dir or str(settings.data_dir / "dataplane"),
            root_netns=dp.root_netns,
            force_metadata=dp.force_metadata,
            enable_isolated_metadata=dp.enable_isolated_metadata,
            router_proxy_port=dp.router_proxy_port,
            dns_domain=dp.dns_domain,
            dhcp_lease_seconds=dp.dhcp_lease_seconds,
            proxy_implementation=dp.proxy_implementation,
            front_answers=dp.front_answers,
            cloudseed_command=dp.cloudseed_command or default_cloudseed_command(),
            agent_socket=settings.agent.socket_path,
            proxy_settings=settings.proxy,
            dnsmasq_user=dp.dnsmasq_user or _effective_user(),
        )


def _effective_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry: dnsmasq takes numbers too
        return str(os.geteuid())


def default_cloudseed_command() -> tuple[str, ...]:
    """This installation's ``cloudseed`` (the venv's script next to the interpreter)."""
    script = Path(sys.executable).parent / "cloudseed"
    if os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "cloudseed.cli.main")


@dataclass(frozen=True, slots=True)
class Names:
    """Every name the data plane gives to a kernel object, from one prefix."""

    root_netns: str = ""

    @property
    def namespace_prefix(self) -> str:
        return f"{self.root_netns}-" if self.root_netns else "cloudseed-"

    def router_namespace(self, router_id: str) -> str:
        return f"{self.namespace_prefix}qrouter-{router_id}"

    def dhcp_namespace(self, network_id: str) -> str:
        return f"{self.namespace_prefix}qdhcp-{network_id}"

    def is_ours(self, namespace: str) -> bool:
        rest = namespace.removeprefix(self.namespace_prefix)
        return rest != namespace and rest.startswith(("qrouter-", "qdhcp-"))

    @staticmethod
    def bridge(network_id: str) -> str:
        return BRIDGE_PREFIX + short_hash(network_id)

    @staticmethod
    def router_leg(router_id: str, network_id: str) -> tuple[str, str]:
        digest = short_hash(f"{router_id}/{network_id}")
        return ROUTER_OUTER_PREFIX + digest, "qr-" + digest

    @staticmethod
    def dhcp_leg(network_id: str) -> tuple[str, str]:
        digest = short_hash(network_id)
        return DHCP_OUTER_PREFIX + digest, "ns-" + digest

    @staticmethod
    def guest_leg(port_id: str) -> str:
        return GUEST_OUTER_PREFIX + short_hash(port_id)


def short_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:LINK_HASH_CHARS]


def derived_mac(key: str) -> str:
    digest = hashlib.sha256(f"mac/{key}".encode()).hexdigest()
    return f"{MAC_PREFIX}:{digest[0:2]}:{digest[2:4]}:{digest[4:6]}"


# -- the desired objects --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bridge:
    name: str
    network_id: str
    mtu: int


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    kind: NamespaceKind
    owner_id: str


@dataclass(frozen=True, slots=True)
class Leg:
    """A veth pair: ``outer`` in the root namespace on ``bridge``, ``inner`` in ``namespace``."""

    namespace: str
    inner: str
    outer: str
    bridge: str
    mac: str
    addresses: tuple[str, ...]  # "ip/prefixlen"
    mtu: int


@dataclass(frozen=True, slots=True)
class FirewallTable:
    namespace: str
    script: str


@dataclass(frozen=True, slots=True)
class FileSpec:
    path: str
    content: str


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    kind: ProcessKind
    namespace: str
    argv: tuple[str, ...]
    # Files the process re-reads on SIGHUP: a change reloads instead of restarting.
    reload_files: tuple[str, ...] = ()
    # Files the process reads only at start: a change restarts it.
    restart_files: tuple[str, ...] = ()
    listen: str = ""  # proxies: "host:port" inside the namespace
    # Listeners its supervisor binds and hands over (fd 3..), so they outlive it.
    sockets: tuple[str, ...] = ()
    # Listeners it opens itself and hands up to its supervisor, who keeps them
    # across its restarts (the shared front).
    keep_sockets: bool = False


@dataclass(frozen=True, slots=True)
class DesiredState:
    root_netns: str
    bridges: tuple[Bridge, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    legs: tuple[Leg, ...] = ()
    tables: tuple[FirewallTable, ...] = ()
    files: tuple[FileSpec, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()
    # Per network: where its guests' metadata is served (doctor reads this).
    metadata_paths: dict[str, MetadataPath] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetadataPath:
    """How a guest on one subnet reaches 169.254.169.254."""

    network_id: str
    namespace: str  # where the proxy runs
    via: str  # "router" or "dhcp"
    owner_id: str  # router id or network id (the proxy's header)
    nexthops: dict[str, str]  # subnet id → next hop for 169.254.169.254/32 (option 121)
