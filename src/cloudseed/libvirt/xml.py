"""libvirt's domain and network XML, read into what cloudseed needs (pure).

From a domain (``virsh dumpxml``): its uuid, name and network interfaces —
each interface's MAC and what it plugs into (a libvirt network, or a bridge).
From a network (``virsh net-dumpxml``): its uuid, bridge, MTU, subnets, and
the DHCP host entries that pin an address to a MAC (IPv4) or to a domain
name (IPv6, where libvirt matches hosts by name or DUID, not MAC).

Only the elements named here are read; anything else in the XML is ignored,
so new libvirt versions adding elements do not matter. Errors are ``Invalid``
naming the element, for the operator who fed the file.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cloudseed.errors import Invalid

# A domain XML is a few KiB; a network with thousands of DHCP hosts stays
# well under this. Larger input is refused before parsing.
MAX_XML_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Interface:
    mac_address: str
    # "network" (source network=NAME) or "bridge" (source bridge=NAME).
    kind: str
    source: str


@dataclass(frozen=True)
class Domain:
    uuid: str
    name: str
    interfaces: tuple[Interface, ...]


@dataclass(frozen=True)
class DhcpHost:
    ip_address: str
    mac_address: str | None
    name: str | None


@dataclass(frozen=True)
class LibvirtSubnet:
    cidr: str
    gateway_ip: str  # the host's address on the bridge
    has_dhcp: bool
    hosts: tuple[DhcpHost, ...]

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_network(self.cidr).version


@dataclass(frozen=True)
class LibvirtNetwork:
    uuid: str
    name: str
    bridge: str
    mtu: int | None
    subnets: tuple[LibvirtSubnet, ...]

    def addresses_for(self, domain: Domain, mac_address: str) -> list[str]:
        """Addresses libvirt's DHCP server pins to this domain's NIC, if any."""
        found: list[str] = []
        for subnet in self.subnets:
            for host in subnet.hosts:
                if host.mac_address is not None:
                    if host.mac_address == mac_address:
                        found.append(host.ip_address)
                elif host.name == domain.name:
                    found.append(host.ip_address)
        return found


def parse_domain(text: str | bytes, where: str = "domain") -> Domain:
    root = _root(text, "domain", where)
    uuid = _required_text(root, "uuid", where)
    name = _required_text(root, "name", where)
    interfaces: list[Interface] = []
    for i, element in enumerate(root.findall("./devices/interface")):
        at = f"{where}: devices/interface[{i + 1}]"
        kind = element.get("type", "")
        mac = element.find("mac")
        source = element.find("source")
        if kind not in {"network", "bridge"}:
            continue  # user-mode, direct (macvtap) …: nothing cloudseed can serve
        if mac is None or not mac.get("address"):
            raise Invalid(f"{at}/mac", "the interface has no MAC address; define the domain "
                          "with virsh first (libvirt assigns one) and dump it again")
        if source is None or not source.get(kind):
            raise Invalid(f"{at}/source", f"a type='{kind}' interface needs source {kind}=…")
        interfaces.append(
            Interface(_mac(mac.get("address", ""), f"{at}/mac"), kind, source.get(kind, ""))
        )
    return Domain(uuid, name, tuple(interfaces))


def parse_network(text: str | bytes, where: str = "network") -> LibvirtNetwork:
    root = _root(text, "network", where)
    name = _required_text(root, "name", where)
    uuid = _required_text(root, "uuid", where)
    bridge = root.find("bridge")
    mtu_element = root.find("mtu")
    mtu = None
    if mtu_element is not None and mtu_element.get("size"):
        mtu = _int(mtu_element.get("size", ""), f"{where}: mtu/@size")
    subnets = tuple(
        _subnet(element, f"{where}: ip[{i + 1}]")
        for i, element in enumerate(root.findall("ip"))
    )
    return LibvirtNetwork(uuid, name, bridge.get("name", "") if bridge is not None else "",
                          mtu, subnets)


def _subnet(element: ET.Element, where: str) -> LibvirtSubnet:
    address = element.get("address")
    if not address:
        raise Invalid(f"{where}/@address", "an <ip> element needs an address")
    prefix = element.get("prefix")
    netmask = element.get("netmask")
    try:
        interface = ipaddress.ip_interface(f"{address}/{prefix or netmask or ''}".rstrip("/"))
    except ValueError:
        raise Invalid(where, f"{address} with prefix {prefix or netmask} is not an address "
                      "and prefix") from None
    dhcp = element.find("dhcp")
    hosts: list[DhcpHost] = []
    for j, host in enumerate(dhcp.findall("host") if dhcp is not None else ()):
        at = f"{where}/dhcp/host[{j + 1}]"
        ip = host.get("ip")
        if not ip:
            continue  # a host entry that only names a lease time or hostname
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            raise Invalid(f"{at}/@ip", f"{ip!r} is not an IP address") from None
        if parsed not in interface.network:
            raise Invalid(f"{at}/@ip", f"{ip} is outside {interface.network}")
        mac = host.get("mac")
        hosts.append(DhcpHost(str(parsed), _mac(mac, f"{at}/@mac") if mac else None,
                              host.get("name")))
    return LibvirtSubnet(str(interface.network), str(interface.ip), dhcp is not None,
                         tuple(hosts))


def _root(text: str | bytes, tag: str, where: str) -> ET.Element:
    if len(text) > MAX_XML_BYTES:
        raise Invalid(where, f"more than {MAX_XML_BYTES} bytes of XML; not a libvirt {tag}")
    try:
        root = ET.fromstring(text)  # noqa: S314 - bounded, and expat refuses entity bombs
    except ET.ParseError as exc:
        raise Invalid(where, f"not well-formed XML: {exc}") from None
    if root.tag != tag:
        raise Invalid(where, f"expected a <{tag}> document (virsh "
                      f"{'dumpxml' if tag == 'domain' else 'net-dumpxml'}), got <{root.tag}>")
    return root


def _required_text(root: ET.Element, tag: str, where: str) -> str:
    value = (root.findtext(tag) or "").strip()
    if not value:
        raise Invalid(f"{where}: {tag}", f"the <{root.tag}> has no <{tag}>")
    return value


def _mac(value: str, where: str) -> str:
    parts = value.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise Invalid(where, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    try:
        [int(p, 16) for p in parts]
    except ValueError:
        raise Invalid(where, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)") from None
    return value.lower()


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Invalid(where, f"{value!r} is not a number") from None
