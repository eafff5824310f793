"""The inventory, as immutable values.

These are the records the store keeps and every tier reads: networks and
their subnets, routers, ports, servers, key pairs. They hold no behaviour
beyond small derived facts, so any layer may pass them around freely.

``ServerView`` is the closed world of one server at one store revision:
everything the renderer, the config drive and the API need, and nothing
more. A view is built by the store in one read transaction, so all the
documents a guest reads during one boot come from one revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class IpVersion:
    V4 = 4
    V6 = 6


class Ipv6Mode(StrEnum):
    SLAAC = "slaac"
    DHCPV6_STATEFUL = "dhcpv6-stateful"
    DHCPV6_STATELESS = "dhcpv6-stateless"


class KeyType(StrEnum):
    SSH = "ssh"
    X509 = "x509"


class TokenPolicy(StrEnum):
    """IMDS session tokens: AWS's ``http-tokens``."""

    OPTIONAL = "optional"
    REQUIRED = "required"


class EndpointState(StrEnum):
    """IMDS endpoint switch: AWS's ``http-endpoint``."""

    ENABLED = "enabled"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class HostRoute:
    destination: str  # CIDR
    nexthop: str  # IP


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    mtu: int = 1500


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    network_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None = None
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    enable_dhcp: bool = True
    ipv6_address_mode: Ipv6Mode | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Router:
    id: str
    name: str
    subnet_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FixedIp:
    subnet_id: str
    ip_address: str


@dataclass(frozen=True, slots=True)
class Port:
    id: str
    network_id: str
    mac_address: str  # lower-case, colon separated
    fixed_ips: tuple[FixedIp, ...] = ()
    floating_ip: str | None = None
    server_id: str | None = None
    name: str = ""
    # Nova's device tag (``--nic ...,tag=TAG``): a tagged port is listed in
    # meta_data.json ``devices`` so the guest can tell its NICs apart.
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """A key that signs instance identity documents and tokens (issue #16).

    ``kid`` is the public key's RFC 7638 thumbprint; the private key is PEM
    (PKCS#8) and is a secret: it is never logged, exported or shown.
    """

    kid: str
    private_key_pem: str = field(repr=False)
    certificate_pem: str
    created_at: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One sensitive read or guest write (issue #16): when, what, from where,
    how it ended, and which tier and host served it. ``id`` is 0 until stored."""

    server_id: str
    at: str  # ISO 8601 UTC, milliseconds
    document: str  # the normalised path, e.g. "ec2/latest/user-data"
    method: str
    status: int
    source: str  # the guest's address as the chain (or the socket) reports it
    tier: str  # "chain" (behind proxy and agent) or "direct"
    host: str  # the API host that served it
    id: int = 0


@dataclass(frozen=True, slots=True)
class PhoneHome:
    """What a guest reported at the end of boot (cloud-init's ``phone_home``).

    Host keys are ``"<type> <base64>"`` (comment dropped) or "" when the guest
    sent none; ``booted_at`` is the store's ISO 8601 UTC time of the report.
    """

    server_id: str
    booted_at: str
    hostname: str = ""
    fqdn: str = ""
    pub_key_rsa: str = ""
    pub_key_ecdsa: str = ""
    pub_key_ed25519: str = ""

    def host_keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.pub_key_rsa, self.pub_key_ecdsa, self.pub_key_ed25519) if k)


@dataclass(frozen=True, slots=True)
class GuestAttribute:
    """One guest-written value (GCE-style guest attributes); ``updated_at`` is the store's UTC."""

    server_id: str
    namespace: str
    key: str
    value: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class KeyPair:
    name: str
    type: KeyType
    public_key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class InjectedFile:
    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class ImdsOptions:
    tokens: TokenPolicy = TokenPolicy.OPTIONAL
    endpoint: EndpointState = EndpointState.ENABLED
    # IP TTL of the token PUT's reply (AWS ``http-put-response-hop-limit``).
    hop_limit: int = 1
    # Metadata items as ``meta-data/tags/instance/`` (AWS ``instance-metadata-tags``).
    tags: bool = False


def _frozen_mapping(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Server:
    id: str  # UUID
    name: str
    hostname: str
    project_id: str
    user_id: str = ""
    # Small integer assigned by the store at creation; EC2 ids derive from it
    # (``i-%08x``), as Nova derives them from its database id.
    ec2_id: int = 0
    availability_zone: str = "nova"
    flavor_name: str = "m1.small"
    # The flavor's disks, as Nova's flavors have them. Only ephemeral and
    # swap show to the guest (EC2 ``block-device-mapping/ephemeral0``, ``swap``).
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap_mb: int = 0
    image_id: str = ""
    launch_index: int = 0
    reservation_id: str = ""
    key_name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=_frozen_mapping)
    user_data: bytes | None = None
    files: tuple[InjectedFile, ...] = ()
    config_drive: bool = False
    imds: ImdsOptions = field(default_factory=ImdsOptions)
    created_at: str = ""  # ISO 8601, UTC


@dataclass(frozen=True, slots=True)
class PortView:
    """A port with the network and subnets it needs to be described."""

    port: Port
    network: Network
    subnets: tuple[Subnet, ...]  # the subnets of port.fixed_ips, in fixed-ip order
    # True when a router is attached to one of this network's subnets.
    routed: bool = False


@dataclass(frozen=True, slots=True)
class ServerView:
    """Everything needed to render one server's metadata, at one revision."""

    server: Server
    revision: int
    keypair: KeyPair | None = None
    ports: tuple[PortView, ...] = ()
    password: str = ""

    @property
    def first_ipv4(self) -> str | None:
        for view in self.ports:
            for fixed in view.port.fixed_ips:
                if ":" not in fixed.ip_address:
                    return fixed.ip_address
        return None

    @property
    def first_floating_ip(self) -> str | None:
        for view in self.ports:
            if view.port.floating_ip:
                return view.port.floating_ip
        return None
