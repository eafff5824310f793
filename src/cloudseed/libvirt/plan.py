"""Domains → an inventory document for the control API's import (pure).

A domain becomes a server whose id is the domain's uuid and whose name is
the domain's name; each of its interfaces becomes a port with the
interface's MAC on the cloudseed network named like the libvirt network it
plugs into (or like the bridge). Addresses come only from the libvirt
network's DHCP host entries: an address cloudseed picked itself could be
leased by libvirt's dnsmasq to another guest, which would then be served
this guest's metadata. A NIC without a pinned address gets no address (the
config drive still works) and a warning that names the ``virsh`` fix.

For a server that exists already, everything the operator set (user-data,
keys, metadata, files, …) is kept: the plan starts from the stored server and
changes only the name and the ports libvirt knows about. Import matches ports
by MAC, so re-running changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudseed.errors import Invalid
from cloudseed.libvirt.xml import Domain, Interface, LibvirtNetwork
from cloudseed.model import Ipv6Mode


@dataclass
class ImportPlan:
    document: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def plan_import(
    domains: Sequence[Domain],
    libvirt_networks: Mapping[str, LibvirtNetwork],
    known_networks: set[str],
    stored_servers: Mapping[str, Mapping[str, Any]],
) -> ImportPlan:
    """The document registering ``domains``.

    ``libvirt_networks``: libvirt networks by name (from XML files or the API);
    ``known_networks``: names of networks cloudseed has; ``stored_servers``:
    the control API's view of servers that exist already, by id.
    """
    plan = ImportPlan({"version": 1, "networks": [], "servers": []})
    added: set[str] = set()
    for domain in domains:
        ports = []
        stored = stored_servers.get(domain.uuid)
        stored_ips = {p["mac_address"]: p["fixed_ips"] for p in (stored or {}).get("ports", [])}
        for nic in domain.interfaces:
            network_name, libvirt_net = _network_of(nic, libvirt_networks)
            if network_name not in known_networks and network_name not in added:
                if libvirt_net is None:
                    raise Invalid(
                        f"{domain.name}: interface {nic.mac_address}",
                        f"plugs into {nic.kind} {nic.source!r}, which cloudseed does not know; "
                        f"create it (cloudseed network create {network_name} --subnet-range "
                        "CIDR) or give the libvirt network's XML (--network-xml)",
                    )
                plan.document["networks"].append(network_document(libvirt_net))
                added.add(network_name)
            ports.append(_port(domain, nic, network_name, libvirt_net=libvirt_net,
                               stored_ips=stored_ips, plan=plan))
        server: dict[str, Any] = _stored_as_document(stored) if stored else {"id": domain.uuid}
        server["name"] = domain.name
        server["ports"] = ports
        plan.document["servers"].append(server)
    return plan


def network_document(network: LibvirtNetwork) -> dict[str, Any]:
    """A cloudseed network mirroring a libvirt network (id = the libvirt uuid)."""
    subnets = []
    for subnet in network.subnets:
        entry: dict[str, Any] = {
            "name": f"{network.name}-v{subnet.ip_version}",
            "cidr": subnet.cidr,
            "gateway_ip": subnet.gateway_ip,
            "enable_dhcp": subnet.has_dhcp,
        }
        if subnet.ip_version == 6:
            mode = Ipv6Mode.DHCPV6_STATEFUL if subnet.has_dhcp else Ipv6Mode.SLAAC
            entry["ipv6_address_mode"] = str(mode)
        subnets.append(entry)
    document: dict[str, Any] = {"id": network.uuid, "name": network.name, "subnets": subnets}
    if network.mtu is not None:
        document["mtu"] = network.mtu
    return document


def config_drive_disk(path: str, fmt: str) -> str:
    """The ``<disk>`` element that attaches a drive image (``virsh attach-device --config``).

    An ISO is a read-only CD-ROM on SATA (q35 has no IDE; libvirt adds the
    AHCI controller itself); a vfat image is a virtio disk, as Nova attaches it.
    """
    if fmt == "vfat":
        return (
            "<disk type='file' device='disk'>\n"
            "  <driver name='qemu' type='raw'/>\n"
            f"  <source file='{_attribute(path)}'/>\n"
            "  <target dev='vdz' bus='virtio'/>\n"
            "</disk>\n"
        )
    return (
        "<disk type='file' device='cdrom'>\n"
        "  <driver name='qemu' type='raw'/>\n"
        f"  <source file='{_attribute(path)}'/>\n"
        "  <target dev='sdz' bus='sata'/>\n"
        "  <readonly/>\n"
        "</disk>\n"
    )


def _network_of(
    nic: Interface, libvirt_networks: Mapping[str, LibvirtNetwork]
) -> tuple[str, LibvirtNetwork | None]:
    if nic.kind == "network":
        return nic.source, libvirt_networks.get(nic.source)
    # A bridge: the libvirt network built on it, if any, else a network named like it.
    for network in libvirt_networks.values():
        if network.bridge == nic.source:
            return network.name, network
    return nic.source, None


def _port(
    domain: Domain,
    nic: Interface,
    network_name: str,
    *,
    libvirt_net: LibvirtNetwork | None,
    stored_ips: Mapping[str, Any],
    plan: ImportPlan,
) -> dict[str, Any]:
    port: dict[str, Any] = {"network": network_name, "mac_address": nic.mac_address}
    pinned = libvirt_net.addresses_for(domain, nic.mac_address) if libvirt_net else []
    if pinned:
        port["fixed_ips"] = [{"ip_address": ip} for ip in pinned]
    elif stored_ips.get(nic.mac_address):
        pass  # keep what the operator gave this port (fixed_ips absent = unchanged)
    else:
        port["fixed_ips"] = []
        if libvirt_net is not None:
            plan.warnings.append(
                f"{domain.name} {nic.mac_address}: no DHCP host entry in libvirt network "
                f"{network_name} pins an address, so the metadata service cannot tell this "
                "guest by its address (its config drive still works); pin one with "
                f"virsh net-update {network_name} add ip-dhcp-host "
                f"\"<host mac='{nic.mac_address}' ip='ADDRESS'/>\" --live --config, "
                "then run cloudseed libvirt sync"
            )
    return port


def _stored_as_document(view: Mapping[str, Any]) -> dict[str, Any]:
    # The control API's server view is an import entry minus its ports.
    return {key: value for key, value in view.items() if key != "ports"}


def _attribute(value: str) -> str:
    return (value.replace("&", "&amp;").replace("'", "&apos;")
            .replace("<", "&lt;").replace(">", "&gt;"))
