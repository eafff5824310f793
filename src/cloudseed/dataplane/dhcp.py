"""dnsmasq for one network: its host file, option file and command line (pure).

Modelled on Neutron's ``neutron/agent/linux/dhcp.py``: one dnsmasq per
network in its DHCP namespace, one ``--dhcp-range=set:subnet-<id>,…,static``
per DHCP-enabled IPv4 subnet (only registered ports get leases), the ports
in ``--dhcp-hostsfile`` (MAC → fixed IP, hostname) and the options per
subnet tag in ``--dhcp-optsfile``. dnsmasq re-reads both files on SIGHUP, so
a port change never restarts it.

IPv6 subnets get router advertisements from the same dnsmasq
(``--enable-ra``), with the flags Neutron's ``ipv6_address_mode`` means:
``slaac`` → prefix with A set, no DHCPv6 (``ra-only``); ``dhcpv6-stateless``
→ A and O set, DHCPv6 answers information requests (``ra-stateless``);
``dhcpv6-stateful`` (or no mode) → M set, addresses from the hosts file
(``static``). The advertisements carry router lifetime 0: the DHCP namespace
is never the guests' default router.

dnsmasq runs as the user that owns the data plane's files (``--user``): by
default it would drop to ``nobody`` and then fail to re-read its files in a
private (0700) data directory. Its own log goes to a file next to its files
(``--log-facility``), never to a discarded stderr.

Option 121 (classless static routes, RFC 3442; 249 is Windows' copy) carries
the route to 169.254.169.254/32 — via the DHCP port when this namespace
serves metadata, via the router's gateway otherwise — and, because a client
that receives option 121 ignores option 3, the on-link routes of the
network's other subnets, the subnet's host routes and the default route too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cloudseed.model import Ipv6Mode, Subnet

METADATA_V4_CIDR = "169.254.169.254/32"
OPTION_CLASSLESS_ROUTES = "option:classless-static-route"
OPTION_WINDOWS_ROUTES = "249"
_NOT_HOSTNAME = re.compile(r"[^a-z0-9-]+")
# dnsmasq's own default is 1000 leases; a network may hold more ports.
MAX_LEASES = 65536
LOG_NAME = "dnsmasq.log"
# Seconds between unsolicited router advertisements (dnsmasq's --ra-param).
RA_INTERVAL_SECONDS = 10
# dnsmasq's keyword per IPv6 address mode (None: stateful, as Neutron).
_V6_RANGE_MODE = {
    Ipv6Mode.SLAAC: "ra-only",
    Ipv6Mode.DHCPV6_STATELESS: "ra-stateless",
    Ipv6Mode.DHCPV6_STATEFUL: "static",
    None: "static",
}


@dataclass(frozen=True, slots=True)
class DnsmasqFiles:
    """Where one network's dnsmasq reads its hosts and options and writes its log."""

    directory: str
    hosts: str
    options: str
    log: str


def files_for(state_dir: str, network_id: str) -> DnsmasqFiles:
    directory = f"{state_dir}/dhcp/{network_id}"
    return DnsmasqFiles(directory, f"{directory}/host", f"{directory}/opts",
                        f"{directory}/{LOG_NAME}")



@dataclass(frozen=True, slots=True)
class DhcpHost:
    mac: str
    ip: str
    hostname: str


@dataclass(frozen=True, slots=True)
class SubnetOptions:
    """What one subnet's clients are told besides their address."""

    subnet: Subnet
    metadata_nexthop: str | None  # None: no route to 169.254.169.254 (no metadata, no router)
    onlink_cidrs: tuple[str, ...] = ()  # other IPv4 subnets on the same network


def subnet_tag(subnet: Subnet) -> str:
    return f"subnet-{subnet.id}"


def hostname_label(name: str) -> str:
    """A hostname dnsmasq accepts as one DNS label."""
    label = _NOT_HOSTNAME.sub("-", name.split(".", maxsplit=1)[0].lower()).strip("-")
    return label[:63] or "host"


def classless_routes(options: SubnetOptions) -> list[tuple[str, str]]:
    """(destination CIDR, next hop) in option-121 order; 0.0.0.0 means on-link."""
    routes: list[tuple[str, str]] = []
    if options.metadata_nexthop:
        routes.append((METADATA_V4_CIDR, options.metadata_nexthop))
    routes.extend((cidr, "0.0.0.0") for cidr in options.onlink_cidrs)  # noqa: S104
    routes.extend((route.destination, route.nexthop) for route in options.subnet.host_routes
                  if ":" not in route.destination)
    if options.subnet.gateway_ip:
        routes.append(("0.0.0.0/0", options.subnet.gateway_ip))
    return routes


def render_hosts(hosts: Sequence[DhcpHost]) -> str:
    return "".join(f"{h.mac},{_host_ip(h.ip)},{h.hostname}\n"
                   for h in sorted(hosts, key=_ip_key))


def _host_ip(ip: str) -> str:
    """dnsmasq's hosts-file spelling: IPv6 addresses in brackets."""
    return f"[{ip}]" if ":" in ip else ip


def render_options(subnets: Sequence[SubnetOptions]) -> str:
    lines: list[str] = []
    for options in subnets:
        tag = f"tag:{subnet_tag(options.subnet)}"
        if options.subnet.ip_version == 6:
            v6 = [ns for ns in options.subnet.dns_nameservers if ":" in ns]
            if v6:
                lines.append(f"{tag},option6:dns-server,{','.join(f'[{ns}]' for ns in v6)}")
            continue
        # An empty option 3 stops dnsmasq from offering itself as the router.
        lines.append(f"{tag},option:router" + (f",{options.subnet.gateway_ip}"
                                                  if options.subnet.gateway_ip else ""))
        routes = classless_routes(options)
        if routes:
            flat = ",".join(f"{dest},{hop}" for dest, hop in routes)
            lines.append(f"{tag},{OPTION_CLASSLESS_ROUTES},{flat}")
            lines.append(f"{tag},{OPTION_WINDOWS_ROUTES},{flat}")
        if options.subnet.dns_nameservers:
            v4 = [ns for ns in options.subnet.dns_nameservers if ":" not in ns]
            if v4:
                lines.append(f"{tag},option:dns-server,{','.join(v4)}")
    return "".join(line + "\n" for line in lines)


def dnsmasq_argv(
    *,
    interface: str,
    subnets: Sequence[Subnet],
    hosts_path: str,
    options_path: str,
    domain: str,
    lease_seconds: int,
    user: str,
    log_path: str,
) -> list[str]:
    """The command line; everything that changes with ports lives in the two files."""
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        # Answer DNS for the network's own names only; nothing is forwarded
        # out of the namespace.
        "--no-resolv",
        f"--domain={domain}",
        f"--local=/{domain}/",
        "--pid-file",
        # dnsmasq opens its log file before it drops privileges, so it can
        # always write it; "cannot read <file>" lands here, never nowhere.
        f"--log-facility={log_path}",
        # The owner of the hosts/options files, so a SIGHUP re-read works in a
        # private (0700) data directory too.
        f"--user={user}",
        "--leasefile-ro",
        "--dhcp-authoritative",
        f"--interface={interface}",
        "--bind-interfaces",
        "--except-interface=lo",
        f"--dhcp-hostsfile={hosts_path}",
        f"--dhcp-optsfile={options_path}",
        f"--dhcp-lease-max={MAX_LEASES}",
    ]
    v6 = False
    for subnet in subnets:
        net = ipaddress.ip_network(subnet.cidr, strict=False)
        if net.version == 6:
            v6 = True
            argv.append(
                f"--dhcp-range=set:{subnet_tag(subnet)},{net.network_address},"
                f"{_V6_RANGE_MODE[subnet.ipv6_address_mode]},{net.prefixlen},{lease_seconds}s")
            continue
        argv.append(
            f"--dhcp-range=set:{subnet_tag(subnet)},{net.network_address},static,"
            f"{net.netmask},{lease_seconds}s"
        )
    if v6:
        # Router lifetime 0: the advertisements configure addresses, never a
        # default route through the DHCP namespace.
        argv += ["--enable-ra", f"--ra-param={interface},{RA_INTERVAL_SECONDS},0"]
    return argv


def _ip_key(host: DhcpHost) -> tuple[int, int, str]:
    address = ipaddress.ip_address(host.ip)
    return (address.version, int(address), host.mac)
