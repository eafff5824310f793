"""Request and response bodies of the control API, as pydantic models.

The same models validate requests, describe responses, and generate the
OpenAPI document, so the three cannot drift apart. Limits that a single
body can break are declared here with the named constants of
``cloudseed.limits``; limits that need stored state (metadata items after a
merge, IPs already taken) are checked by ``service.py``. Rules of
``store.rules`` (ids, names) run here as validators, so the request's field
path is named; the store's writer applies them again to what it stores.

``bodies.parse_body`` turns JSON into these models, naming the field path.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from cloudseed.errors import Invalid
from cloudseed.limits import (
    DEFAULT_HOP_LIMIT,
    MAX_HOP_LIMIT,
    MAX_HOSTNAME_CHARS,
    MAX_INJECTED_FILE_BYTES,
    MAX_INJECTED_FILE_PATH_CHARS,
    MAX_INJECTED_FILES,
    MAX_METADATA_ITEMS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAME_CHARS,
    MAX_PUBLIC_KEY_BYTES,
    MAX_USER_DATA_BASE64_CHARS,
    METADATA_KEY_PATTERN,
    MIN_HOP_LIMIT,
)
from cloudseed.model import EndpointState, Ipv6Mode, KeyType, TokenPolicy
from cloudseed.store import rules
from cloudseed.store.rules import MAX_ID_CHARS, MAX_LAUNCH_INDEX, MAX_MTU, MIN_MTU

# A subnet with more DNS servers or host routes than this is a mistake, and the
# rendered network_data.json must stay small.
MAX_DNS_NAMESERVERS = 16
MAX_HOST_ROUTES = 64
MAX_PORTS_PER_SERVER = 16
# A port has an address or two per subnet it is on; more than this is a mistake.
MAX_FIXED_IPS_PER_PORT = 8
MAX_ROUTER_SUBNETS = 256



def _rule(check: Any) -> AfterValidator:
    """A rule of ``store.rules`` as a validator, so the body's field path is named."""

    def validate(value: str) -> str:
        try:
            check(value, "")
        except Invalid as exc:
            raise PydanticCustomError("rule", exc.reason) from None
        return value

    return AfterValidator(validate)


# Free text (names, paths): bounded, no control, format or separator characters.
Text = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), _rule(rules.check_text)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS),
                 _rule(rules.check_text)]  # fmt: skip
# Ids of our entities: rules.ID_PATTERN (they become file and namespace names).
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS),
               _rule(rules.check_id)]  # fmt: skip
# Ids of other systems' things (project, user, image): bounded free text.
ForeignId = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS), _rule(rules.check_text)]
# Nova's device tag (``parameter_types.tag``): up to 60 characters, no ``,``
# or ``/`` (the CLI's ``--nic`` separates options with commas).
MAX_TAG_CHARS = 60
DeviceTag = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS, pattern=r"^[^,/]*$")
]
# Flavor disk sizes; a bound keeps them plain integers in every store.
DiskSize = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Address strings are checked by addressing.py against their subnet; here only
# their size is bounded.
Address = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Length first, so an over-long key is a LimitExceeded naming the limit.
MetadataKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS),
    StringConstraints(pattern=METADATA_KEY_PATTERN),
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_ITEMS)]


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "not valid base64") from None
    return value


def _file_contents(value: str) -> str:
    size = len(base64.b64decode(_base64(value)))
    if size > MAX_INJECTED_FILE_BYTES:
        raise PydanticCustomError(
            "file_too_large",
            "decoded contents are {size} bytes; the limit is {limit} bytes",
            {"size": size, "limit": MAX_INJECTED_FILE_BYTES},
        )
    return value


UserData = Annotated[
    str,
    StringConstraints(max_length=MAX_USER_DATA_BASE64_CHARS),
    AfterValidator(_base64),
]
FileContents = Annotated[
    str,
    # Base64 of the largest file, so the cheap length check runs first.
    StringConstraints(max_length=(MAX_INJECTED_FILE_BYTES + 2) // 3 * 4),
    AfterValidator(_file_contents),
]


class Body(BaseModel):
    # Unknown fields are refused: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid")

# Key pair names are path segments of /v1/keypairs/{name}: no "/".
KeypairName = Annotated[Name, _rule(rules.check_keypair_name)]

# -- requests -----------------------------------------------------------------


class HostRouteBody(Body):
    destination: Address
    nexthop: Address


class SubnetCreate(Body):
    id: Id | None = None
    name: Text = ""
    cidr: Address
    # "auto" = the first host address, as Neutron does; null = no gateway.
    gateway_ip: Address | None = "auto"
    dns_nameservers: Annotated[list[Address], Field(max_length=MAX_DNS_NAMESERVERS)] = []
    host_routes: Annotated[list[HostRouteBody], Field(max_length=MAX_HOST_ROUTES)] = []
    enable_dhcp: bool = True
    ipv6_address_mode: Ipv6Mode | None = None


class NetworkCreate(Body):
    id: Id | None = None
    name: Name
    mtu: Annotated[int, Field(ge=MIN_MTU, le=MAX_MTU)] = 1500
    subnets: list[SubnetCreate] = []


class RouterCreate(Body):
    id: Id | None = None
    name: Name
    # Subnet ids or names, or network ids or names (their first subnet of each family).
    subnets: Annotated[list[Name], Field(max_length=MAX_ROUTER_SUBNETS)] = []


class RouterSubnetAdd(Body):
    subnet: Name


class FixedIpBody(Body):
    subnet: Name | None = None
    ip_address: Address | None = None


FixedIps = Annotated[list[FixedIpBody], Field(max_length=MAX_FIXED_IPS_PER_PORT)]


class PortCreate(Body):
    id: Id | None = None
    name: Text = ""
    network: Name
    mac_address: Address | None = None
    fixed_ips: FixedIps | None = None
    floating_ip: Address | None = None
    tag: DeviceTag | None = None


class ServerNic(Body):
    """One NIC of a new server: an existing port, or a new port on a network."""

    port: Name | None = None
    network: Name | None = None
    fixed_ip: Address | None = None
    # Several addresses (``--nic v4-fixed-ip=…,v6-fixed-ip=…``), as a port's.
    fixed_ips: FixedIps | None = None
    mac_address: Address | None = None
    tag: DeviceTag | None = None
    # Taking a port another server owns moves it (and its address's metadata):
    # refused unless asked for explicitly.
    move: bool = False


class InjectedFileBody(Body):
    path: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_INJECTED_FILE_PATH_CHARS),
        _rule(rules.check_text),
    ]
    contents: FileContents  # base64, as Nova's personality files


class ImdsBody(Body):
    tokens: TokenPolicy = TokenPolicy.OPTIONAL
    endpoint: EndpointState = EndpointState.ENABLED
    hop_limit: Annotated[int, Field(ge=MIN_HOP_LIMIT, le=MAX_HOP_LIMIT)] = DEFAULT_HOP_LIMIT
    tags: bool = False


class ServerCreate(Body):
    id: Id | None = None
    name: Name
    hostname: Annotated[str, StringConstraints(max_length=MAX_HOSTNAME_CHARS)] | None = None
    project_id: Annotated[ForeignId, StringConstraints(min_length=1)] = "default"
    user_id: ForeignId = ""
    availability_zone: Name = "nova"
    flavor_name: Name = "m1.small"
    root_gb: DiskSize = 0
    ephemeral_gb: DiskSize = 0
    swap_mb: DiskSize = 0
    image_id: ForeignId = ""
    launch_index: Annotated[int, Field(ge=0, le=MAX_LAUNCH_INDEX)] = 0
    reservation_id: ForeignId = ""
    key_name: KeypairName | None = None
    metadata: Metadata = {}
    user_data: UserData | None = None
    files: Annotated[list[InjectedFileBody], Field(max_length=MAX_INJECTED_FILES)] = []
    config_drive: bool = False
    imds: ImdsBody = ImdsBody()
    networks: Annotated[list[ServerNic], Field(max_length=MAX_PORTS_PER_SERVER)] = []


class ServerUpdate(Body):
    name: Name | None = None
    hostname: Annotated[str, StringConstraints(max_length=MAX_HOSTNAME_CHARS)] | None = None
    imds: ImdsBody | None = None
    config_drive: bool | None = None


class MetadataBody(Body):
    metadata: Metadata


class MetaItemBody(Body):
    meta: Metadata


class KeypairCreate(Body):
    name: KeypairName
    type: KeyType = KeyType.SSH
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PUBLIC_KEY_BYTES)]


# -- responses ----------------------------------------------------------------


class HostRouteOut(Body):
    destination: str
    nexthop: str


class SubnetOut(Body):
    id: str
    name: str
    network_id: str
    cidr: str
    ip_version: Literal[4, 6]
    gateway_ip: str | None
    dns_nameservers: list[str]
    host_routes: list[HostRouteOut]
    enable_dhcp: bool
    ipv6_address_mode: Ipv6Mode | None


class NetworkOut(Body):
    id: str
    name: str
    mtu: int
    subnets: list[SubnetOut]


class RouterOut(Body):
    id: str
    name: str
    subnet_ids: list[str]


class FixedIpOut(Body):
    subnet_id: str
    ip_address: str


class PortOut(Body):
    id: str
    name: str
    network_id: str
    mac_address: str
    fixed_ips: list[FixedIpOut]
    floating_ip: str | None
    server_id: str | None
    tag: str | None


class InjectedFileOut(Body):
    path: str
    contents: str


class ImdsOut(Body):
    tokens: TokenPolicy
    endpoint: EndpointState
    hop_limit: int
    tags: bool


class ServerOut(Body):
    id: str
    name: str
    hostname: str
    project_id: str
    user_id: str
    ec2_id: int
    availability_zone: str
    flavor_name: str
    root_gb: int
    ephemeral_gb: int
    swap_mb: int
    image_id: str
    launch_index: int
    reservation_id: str
    key_name: str | None
    metadata: dict[str, str]
    user_data: str | None
    files: list[InjectedFileOut]
    config_drive: bool
    imds: ImdsOut
    created_at: str
    ports: list[PortOut]


class KeypairOut(Body):
    name: str
    type: KeyType
    public_key: str
    fingerprint: str


class NetworkList(Body):
    networks: list[NetworkOut]


class SubnetList(Body):
    subnets: list[SubnetOut]


class RouterList(Body):
    routers: list[RouterOut]


class PortList(Body):
    ports: list[PortOut]


class ServerList(Body):
    servers: list[ServerOut]


class KeypairList(Body):
    keypairs: list[KeypairOut]


class PasswordOut(Body):
    password: str


class PhoneHomeOut(Body):
    # What the guest's cloud-init phone_home reported (docs/DECISIONS.md).
    booted: bool
    booted_at: str | None
    hostname: str
    fqdn: str
    host_keys: list[str]


class GuestAttributeOut(Body):
    # What the guest wrote under <namespace>/<key> (docs/GUESTS.md).
    namespace: str
    key: str
    value: str
    updated_at: str


class GuestAttributeList(Body):
    guest_attributes: list[GuestAttributeOut]


class IdentityKeyOut(Body):
    # A published identity key: its id (RFC 7638 thumbprint), age and role.
    kid: str
    created_at: str
    signing: bool


class IdentityKeyList(Body):
    keys: list[IdentityKeyOut]


class Jwk(Body):
    kty: Literal["RSA"]
    kid: str
    use: Literal["sig"]
    alg: Literal["RS256"]
    n: str
    e: str


class JwksOut(Body):
    # RFC 7517: verify identity tokens against these (match the token's kid).
    keys: list[Jwk]


class AuditRecordOut(Body):
    # One sensitive read or guest write (docs/DECISIONS.md, access audit).
    id: int
    server_id: str
    at: str
    document: str
    method: str
    status: int
    source: str
    tier: Literal["chain", "direct"]
    host: str


class AuditOut(Body):
    records: list[AuditRecordOut]
    # Pass as ?before= for the next (older) page; null when there is none.
    next_before: int | None


class KnownHostsOut(Body):
    # One OpenSSH known_hosts line per reported host key.
    known_hosts: list[str]


class HealthOut(Body):
    # Degraded is still 200: see http.health and docs/DECISIONS.md.
    status: Literal["ok", "degraded"]
    reasons: list[str] = []
    revision: int | None = None  # absent while the store is unreachable


class ErrorOut(Body):
    error: str
    message: str
    field: str | None = None
    reason: str | None = None
    limit: int | str | None = None
    kind: str | None = None
    key: str | None = None


class ImportResult(Body):
    changed: bool
    revision: int
    created: dict[str, int]
    updated: dict[str, int]
