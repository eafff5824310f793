"""The inventory's invariants: the one place each rule is written.

The store's writer calls these inside every write transaction, so no entry
point -- the single-resource control API, bulk import, a test, anything
later -- can store what they refuse. The control layer calls the same
functions earlier, while it still knows the request's field path (so an
error in a large document names ``servers[17].ports[0].fixed_ips[0]``), but
never a copy of them: one rule, one message, one status on every path.

The rules (docs/DECISIONS.md, "Inventory rules"):

- ids match ``ID_PATTERN``: they become file names, namespace names and
  header values;
- names carry no control, format (bidi override) or separator characters;
- a fixed IP is written in canonical form, lies inside its subnet and is
  never the subnet's network, broadcast, gateway, DHCP-port or metadata
  address;
- subnets lie outside the unspecified, IPv4 link-local, multicast, IPv4-mapped
  and reserved ranges, and leave room for a gateway, a DHCP port and a guest;
- MACs are unicast, not all-zero, lower-case and colon separated;
- a port owned by one server moves to another owner (or to none) only when
  the caller says ``move``;
- a guest attribute's namespace and key match ``GUEST_ATTRIBUTE_NAME_PATTERN``,
  its value is text within ``MAX_GUEST_ATTRIBUTE_VALUE_BYTES``, and the
  guest's writes spend a per-server budget (limits.py).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from cloudseed.errors import Conflict, Invalid, LimitExceeded, NotFound, RateLimited
from cloudseed.limits import (
    GUEST_ATTRIBUTE_NAME_PATTERN,
    GUEST_ATTRIBUTE_WRITE_BURST,
    GUEST_ATTRIBUTE_WRITES_PER_MINUTE,
    MAX_GUEST_ATTRIBUTE_NAME_CHARS,
    MAX_GUEST_ATTRIBUTE_VALUE_BYTES,
)
from cloudseed.model import GuestAttribute, Network, Server, Subnet

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ids become file names (config drives, state dirs), namespace names and
# header values: ASCII letters, digits, "_", "." and "-", not starting with
# "." or "-" (no ".", "..", hidden files or things that parse as options).
# A UUID matches. 64 is the width of every id column.
MAX_ID_CHARS = 64
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_ID = re.compile(ID_PATTERN)
# Unicode categories refused in names and paths: control (Cc: NUL, newline,
# escape), format (Cf: bidi overrides, zero-width), surrogates, private use,
# unassigned, and line/paragraph separators. They corrupt logs, CLI tables
# and file names, or show text in another order than it is stored.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Where the metadata service answers; no port may hold these.
METADATA_V4_IP = "169.254.169.254"
METADATA_V6_IP = "fe80::a9fe:a9fe"
# Ranges no subnet may overlap: nothing routable to or from a guest there, or
# (169.254.0.0/16) the metadata address itself. IPv4 loopback stays allowed:
# the demo and direct-mode tests put "guests" on 127.0.90.0/24.
REFUSED_RANGES: tuple[IpNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network"
        "169.254.0.0/16",  # IPv4 link-local, holds 169.254.169.254
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
        "::/127",  # unspecified and loopback
        "::ffff:0:0/96",  # IPv4-mapped
        "ff00::/8",  # multicast
    )
)
# A subnet holds at least a gateway, a DHCP port and one guest: /30 and /126
# are the smallest; /31, /32, /127 and /128 are refused alike.
MAX_PREFIX = {4: 30, 6: 126}
# Linux accepts MTUs from 68 (IPv4 minimum) to 65535; 9216 is the largest jumbo
# frame common switches pass, and anything bigger is a typo.
MIN_MTU = 68
MAX_MTU = 9216
# Integer columns are 32-bit signed on both backends; a bigger value must be a
# 400 on SQLite and PostgreSQL alike, not a 500 from the driver.
MAX_INT32 = 2**31 - 1
# Nova's launch_index counts servers of one request (max_count, bounded by
# quota); anything past 32-bit is a typo or an attack.
MAX_LAUNCH_INDEX = MAX_INT32
# EC2 ids are i-%08x; the column is 32-bit signed.
MAX_EC2_ID = MAX_INT32
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NETWORK, _BROADCAST = "the network address", "the broadcast address"
_DHCP = "the DHCP port's address"


def check_id(value: str, field: str) -> str:
    if len(value) > MAX_ID_CHARS:
        raise LimitExceeded(field, MAX_ID_CHARS, f"longer than {MAX_ID_CHARS} characters")
    if not _ID.match(value):
        raise Invalid(
            field,
            f"{value!r} is not an id: use 1-{MAX_ID_CHARS} of A-Z a-z 0-9 _ . -, "
            "not starting with . or - (a UUID fits)",
        )
    return value


def check_text(value: str, field: str) -> str:
    """A name or path: no control, format, separator or unassigned characters."""
    if value.isascii() and value.isprintable():
        return value  # the common case, checked in C: printable ASCII has none of them
    for position, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise Invalid(
                field,
                f"character {position} is U+{ord(char):04X} ({unicodedata.name(char, 'control')}); "
                "control, format (bidi) and separator characters are not allowed",
            )
    return value


def parse_address(text: str, field: str) -> IpAddress:
    """An IP address in any spelling but with no zone id; ``str()`` of it is canonical."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(field, f"{text!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise Invalid(field, f"{text!r} has a zone id; give the address without %zone")
    return address


def check_canonical(text: str, field: str) -> IpAddress:
    """A stored address: in canonical form, so one address has one spelling."""
    address = parse_address(text, field)
    if str(address) != text:
        raise Invalid(field, f"{text!r} is not in canonical form; write {address}")
    return address


def parse_network(cidr: str, field: str) -> IpNetwork:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise Invalid(field, f"{cidr!r} is not a CIDR such as 10.0.0.0/24") from None
    if "%" in cidr:
        raise Invalid(field, f"{cidr!r} has a zone id; give the prefix without %zone")
    if str(network) != cidr:
        raise Invalid(
            field, f"{cidr!r} has host bits set or is not canonical; did you mean {network}?"
        )
    return network


def check_subnet_range(cidr: str, field: str) -> IpNetwork:
    """A subnet a guest can live on: canonical, outside refused ranges, big enough."""
    network = parse_network(cidr, field)
    for refused in REFUSED_RANGES:
        if refused.version == network.version and refused.overlaps(network):
            raise Invalid(field, f"{cidr} overlaps {refused}, which no subnet may use")
    largest = MAX_PREFIX[network.version]
    if network.prefixlen > largest:
        raise LimitExceeded(
            field,
            f"/{largest}",
            f"{cidr} is too small: IPv{network.version} subnets need at least /{largest} "
            "(a gateway, a DHCP port and a guest)",
        )
    return network


def check_unicast(text: str, field: str) -> IpAddress:
    """An address that can be a host's (floating IPs, DNS servers, next hops).

    Loopback stays allowed, as for subnets: loopback "guests" (the demo, the
    bench) use a resolver such as systemd-resolved's 127.0.0.53.
    """
    address = parse_address(text, field)
    if address.is_multicast or address.is_unspecified:
        raise Invalid(field, f"{text} is not a unicast host address")
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        raise Invalid(field, f"{text} is the broadcast address")
    return address


def dhcp_address(subnet: Subnet) -> str | None:
    """The address the data plane gives the network's DHCP port on this subnet.

    The highest address below the last that is not the gateway
    (``dataplane/plan.py`` falls back to it when no DHCP port is registered),
    on every IPv4 subnet and on IPv6 subnets with DHCP. Reserving it keeps a
    port from taking it and moving the DHCP port under running guests.
    """
    return _dhcp_address(subnet.cidr, subnet.gateway_ip, subnet.ip_version, subnet.enable_dhcp)


def subnet_network(cidr: str) -> IpNetwork:
    """A stored (so canonical) subnet prefix, parsed once per process."""
    return _subnet_network(cidr)


def reserved_addresses(subnet: Subnet) -> Mapping[str, str]:
    """Address → why no guest port may hold it (shared: never change it)."""
    return _reserved(subnet.cidr, subnet.gateway_ip, subnet.ip_version, subnet.enable_dhcp)


# Parsing a prefix and its reserved addresses costs ~50 µs; a bulk import checks
# every port's addresses against a handful of subnets (twice: the plan and the
# writer), so they are computed once per subnet's relevant fields.
@functools.lru_cache(maxsize=4096)
def _subnet_network(cidr: str) -> IpNetwork:
    return ipaddress.ip_network(cidr)


@functools.lru_cache(maxsize=4096)
def _dhcp_address(cidr: str, gateway_ip: str | None, ip_version: int,
                  enable_dhcp: bool) -> str | None:
    if ip_version == 6 and not enable_dhcp:
        return None
    last = int(_subnet_network(cidr).broadcast_address) - 1
    candidate = str(ipaddress.ip_address(last))
    if candidate == gateway_ip:
        candidate = str(ipaddress.ip_address(last - 1))
    return candidate


@functools.lru_cache(maxsize=4096)
def _reserved(cidr: str, gateway_ip: str | None, ip_version: int,
              enable_dhcp: bool) -> Mapping[str, str]:
    network = _subnet_network(cidr)
    reserved = {str(network.network_address): _NETWORK}
    if network.version == 4:
        reserved[str(network.broadcast_address)] = _BROADCAST
        reserved[METADATA_V4_IP] = "the metadata address"
    else:
        reserved[METADATA_V6_IP] = "the metadata address"
    if gateway_ip is not None:
        reserved[gateway_ip] = "the gateway"
    dhcp = _dhcp_address(cidr, gateway_ip, ip_version, enable_dhcp)
    if dhcp is not None:
        reserved[dhcp] = _DHCP
    return MappingProxyType(reserved)


def is_dhcp_port_name(name: str, server_id: str | None) -> bool:
    # The data plane's convention (dataplane/plan.py, DHCP_PORT_NAME_PREFIX).
    return server_id is None and name.startswith("dhcp")


def check_fixed_ip(subnet: Subnet, ip: str, field: str, *, dhcp_port: bool = False) -> str:
    """The canonical address, if a port may hold it on ``subnet``; raises naming the field."""
    address = parse_address(ip, field)
    ip = str(address)
    if address not in subnet_network(subnet.cidr):
        raise Invalid(field, f"{ip} is not inside subnet {subnet.cidr}")
    why = reserved_addresses(subnet).get(ip)
    if why is None or (dhcp_port and why == _DHCP):
        return ip
    message = f"{ip} is {why} of subnet {subnet.cidr}, which no port may hold"
    if why in (_NETWORK, _BROADCAST):
        raise Invalid(field, message)  # never valid, whatever is stored
    raise Conflict(field, message)


def normalise_mac(mac: str, field: str) -> str:
    text = mac.strip().lower().replace("-", ":")
    if not _MAC.match(text):
        raise Invalid(field, f"{mac!r} is not a MAC address such as fa:16:3e:12:34:56")
    if int(text[:2], 16) & 0x01:
        raise Invalid(field, f"{mac} is a multicast address")
    if text == "00:00:00:00:00:00":
        raise Invalid(field, "the all-zero MAC address is not usable")
    return text


def check_port_move(
    port_id: str, old_owner: str | None, new_owner: str | None, move: bool, field: str
) -> None:
    """A port a server owns changes owner only when the caller asks for a move."""
    if old_owner is None or old_owner == new_owner or move:
        return
    raise Conflict(
        field,
        f"port {port_id} belongs to server {old_owner}; giving it to another server (or "
        "none) hands that address's metadata to another guest -- say move: true if you mean it",
    )


def router_subnets(
    ref: str, subnets: Sequence[Subnet], networks: Sequence[Network], field: str
) -> list[Subnet]:
    """What a router attaches for ``ref``: one subnet (id or name), or a network's subnets."""
    for subnet in subnets:
        if subnet.id == ref:
            return [subnet]
    named = [s for s in subnets if s.name == ref]
    if len(named) > 1:
        raise Conflict(field, f"several subnets are called {ref!r}; use the id")
    if named:
        return named
    network = next((n for n in networks if ref in (n.id, n.name)), None)
    if network is None:
        raise NotFound("subnet or network", ref)
    attached = [s for s in subnets if s.network_id == network.id]
    if not attached:
        raise Invalid(field, f"network {network.name} has no subnets to attach")
    return attached


def check_int(value: int, field: str, low: int, high: int) -> int:
    """An integer inside its field's range (the same answer on SQLite and PostgreSQL)."""
    if not low <= value <= high:
        raise LimitExceeded(field, high, f"{value} is outside {low}..{high}")
    return value


def check_subnet(subnet: Subnet) -> None:
    network = check_subnet_range(subnet.cidr, "cidr")
    if network.version != subnet.ip_version:
        raise Invalid("ip_version", f"{subnet.cidr} is not an IPv{subnet.ip_version} prefix")
    if subnet.gateway_ip is not None:
        gateway = check_canonical(subnet.gateway_ip, "gateway_ip")
        if (
            gateway not in network
            or gateway == network.network_address
            or (network.version == 4 and gateway == network.broadcast_address)
        ):
            raise Invalid("gateway_ip", f"{subnet.gateway_ip} is not a host address of {network}")


def check_server_fields(server: Server) -> None:
    """What a stored server may hold beyond its id and name."""
    check_int(server.launch_index, "launch_index", 0, MAX_LAUNCH_INDEX)
    check_int(server.ec2_id, "ec2_id", 0, MAX_EC2_ID)
    for field in ("hostname", "project_id", "user_id", "availability_zone", "flavor_name",
                  "image_id", "reservation_id"):  # fmt: skip
        check_text(getattr(server, field), field)
    if server.key_name is not None:
        check_keypair_name(server.key_name, "key_name")
    for i, item in enumerate(server.files):
        check_text(item.path, f"files[{i}].path")


def check_keypair_name(name: str, field: str) -> str:
    check_text(name, field)
    if not name or "/" in name:
        raise Invalid(field, f"{name!r} is not a key pair name: give 1 or more characters, no '/'")
    return name


_GUEST_NAME = re.compile(GUEST_ATTRIBUTE_NAME_PATTERN)
# Whitespace a value may hold (a multi-line text); every other control
# character could rewrite the operator's terminal when the CLI prints it.
_VALUE_WHITESPACE = frozenset("\t\n\r")


def check_guest_attribute(attribute: GuestAttribute) -> None:
    check_guest_attribute_name(attribute.namespace, "namespace")
    check_guest_attribute_name(attribute.key, "key")
    check_guest_attribute_value(attribute.value)


def check_guest_attribute_name(name: str, field: str) -> None:
    if len(name) > MAX_GUEST_ATTRIBUTE_NAME_CHARS:
        raise LimitExceeded(field, MAX_GUEST_ATTRIBUTE_NAME_CHARS,
                            f"longer than {MAX_GUEST_ATTRIBUTE_NAME_CHARS} characters")
    if not _GUEST_NAME.match(name):
        raise Invalid(field, f"use 1-{MAX_GUEST_ATTRIBUTE_NAME_CHARS} of A-Z a-z 0-9 _ . -, "
                             "not starting with . or -")


def check_guest_attribute_value(value: str) -> None:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_GUEST_ATTRIBUTE_VALUE_BYTES:
        raise LimitExceeded("value", MAX_GUEST_ATTRIBUTE_VALUE_BYTES,
                            f"{size} bytes; at most {MAX_GUEST_ATTRIBUTE_VALUE_BYTES}")
    if value.isascii() and value.isprintable():
        return
    for position, char in enumerate(value):
        if char not in _VALUE_WHITESPACE and unicodedata.category(char) in {"Cc", "Cs"}:
            raise Invalid("value", f"character {position} is U+{ord(char):04X}; a value is "
                                   "UTF-8 text without control characters (tab and newline "
                                   "allowed)")


def spend_guest_write(tokens: float | None, refilled_at: float, now: float) -> float:
    """A server's write budget after one more guest write; RateLimited when spent.

    ``tokens`` None: the server has not written yet (a full bucket).
    """
    per_second = GUEST_ATTRIBUTE_WRITES_PER_MINUTE / 60
    if tokens is None:
        tokens = float(GUEST_ATTRIBUTE_WRITE_BURST)
    else:
        tokens = min(float(GUEST_ATTRIBUTE_WRITE_BURST),
                     tokens + max(0.0, now - refilled_at) * per_second)
    if tokens < 1:
        retry = max(1, math.ceil((1 - tokens) / per_second))
        raise RateLimited(retry, f"guest attribute writes are limited to "
                                 f"{GUEST_ATTRIBUTE_WRITES_PER_MINUTE} per minute per server "
                                 f"(bursts of {GUEST_ATTRIBUTE_WRITE_BURST}); retry after "
                                 f"{retry} s")
    return tokens - 1
